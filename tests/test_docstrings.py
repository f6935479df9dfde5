"""Every example in the docstrings of ddsp_core, ddsp_datarax and train runs and prints what it shows.

The examples run with each module's own globals (as ``pytest --doctest-modules`` would), under the suite's jaxtyping
+ beartype import hook. Examples that need data a test machine does not have (an NSynth download, a user's folder)
carry ``# doctest: +SKIP`` in the docstring itself.
"""

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("ddsp_core", "ddsp_datarax", "train")


def _modules_with_examples() -> list[str]:
    """Dotted names of the package modules whose source holds a ``>>>`` example (found without importing them)."""
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ">>>" in path.read_text(encoding="utf-8"):
                parts = path.relative_to(ROOT).with_suffix("").parts
                names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("module_name", _modules_with_examples())
def test_docstring_examples_run_and_print_what_they_show(module_name):
    module = importlib.import_module(module_name)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    assert tests, f"{module_name} has '>>>' in its source but no docstring example was found"
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
