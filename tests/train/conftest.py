"""Shared fixtures of the training-application tests: one tiny offline dataset and one tiny trained run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train._run import tiny_args
from train.cli import main
from train.data import prepare_offline


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return prepare_offline("tiny", tmp_path_factory.mktemp("data") / "offline-tiny", crepe_model="tiny",
                           progress=False)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_dataset) -> Path:
    """A finished 6-step tiny run (read-only for tests: copy it before changing it)."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["fit", *tiny_args(run_dir, tiny_dataset)]) == 0
    return run_dir
