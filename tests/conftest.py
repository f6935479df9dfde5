"""Test-suite configuration.

Runtime shape checking is switched on for the whole suite by the ``--jaxtyping-packages`` option in
``pyproject.toml`` (jaxtyping's import hook with beartype over ddsp_core, ddsp_datarax and train).
"""

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Folder holding the reference fixtures copied from ../shared/fixtures."""
    return FIXTURES



os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
