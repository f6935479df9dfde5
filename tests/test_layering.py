"""The layers point one way: ``train`` may import ``ddsp_datarax`` and ``ddsp_core``; ``ddsp_datarax`` may import
``ddsp_core``; ``ddsp_core`` imports neither, nor datarax or flax. Checked on the source's import statements
(function-level imports included), not only on what happens to be in ``sys.modules``."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FORBIDDEN = {
    "ddsp_core": {"train", "ddsp_datarax", "datarax", "flax"},
    "ddsp_datarax": {"train"},
}


def _imported_packages(path: Path) -> set[str]:
    """Top-level package of every ``import x`` / ``from x import y`` anywhere in the file (relative imports
    resolve inside the file's own package and are skipped)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_library_layers_do_not_import_the_layers_above_them(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {file: names for file, names in offenders.items() if names} == {}


def test_the_import_scan_sees_function_level_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from train.data import load_split\n    import flax.nnx\n")
    assert _imported_packages(sample) == {"train", "flax"}
