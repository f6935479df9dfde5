"""The command line's promises (train/cli.py): bad numbers, a dataset of another preset, an unwritable output and
checkpoint choice each end in one line ``ddsp-train: error: ...`` and exit status 2, writing nothing."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from ddsp_core import _io
from tests.train._run import REPO, tiny_args
from train.cli import describe_change, main


@pytest.fixture
def tone(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, 0.5 * np.sin(2 * np.pi * 330.0 * np.arange(8000) / 16000), 16000)
    return path


def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddsp-train: error:"), lines
    return lines[0]


@pytest.mark.parametrize(("option", "value"), [("--octave-shift", "nan"), ("--loudness-shift", "inf"),
                                                ("--loudness-shift", "-inf")])
def test_nan_and_infinite_numbers_are_refused_in_one_line(trained_run, tone, tmp_path, capsys, option, value):
    output = tmp_path / "out.wav"
    with pytest.raises(SystemExit) as info:
        main(["transfer", str(trained_run), str(tone), str(output), f"{option}={value}"])
    assert info.value.code == 2
    assert f"expected a finite number, got '{value}'" in _one_error_line(capsys)
    assert not output.exists()


def test_a_dataset_of_another_preset_is_not_replaced(tmp_path, tiny_dataset, capsys):
    dataset = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, dataset)
    before = {path.name: path.read_bytes() for path in dataset.iterdir() if path.is_file()}
    assert main(["prepare", "--preset", "demo", "--set", f"data.dataset_dir={dataset}"]) == 2
    error = _one_error_line(capsys)
    assert "holds a prepared dataset of offline tiny, not offline demo" in error and "--overwrite-dataset" in error
    assert {path.name: path.read_bytes() for path in dataset.iterdir() if path.is_file()} == before


def test_prepare_says_how_many_examples_went_to_each_split(tmp_path, tiny_dataset, capsys):
    from train.data import load_manifest

    dataset = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, dataset)
    assert main(["prepare", "--preset", "tiny", "--set", f"data.dataset_dir={dataset}"]) == 0
    counts = load_manifest(dataset)["counts"]
    expected = ", ".join(f"{name} {counts[name]}" for name in ("train", "validation", "test"))
    assert f"prepared dataset: {dataset} ({expected} examples)" in capsys.readouterr().out


@pytest.mark.parametrize(("code", "reason"), [(errno.EACCES, "Permission denied"),
                                              (errno.ENOSPC, "No space left on device")])
def test_an_unwritable_output_folder_is_one_line_naming_the_path(trained_run, tone, tmp_path, capsys, monkeypatch,
                                                                  code, reason):
    def refuse(*args, dir=None, **kwargs):  # what a read-only or full disk answers to creating a file
        raise OSError(code, reason, dir)

    monkeypatch.setattr(_io.tempfile, "mkstemp", refuse)
    output = tmp_path / "out" / "resynthesis.wav"
    output.parent.mkdir()
    assert main(["resynthesize", str(trained_run), str(tone), str(output)]) == 2
    assert _one_error_line(capsys) == f"ddsp-train: error: {output}: {reason}"
    assert list(output.parent.iterdir()) == []


def test_resynthesize_uses_the_chosen_checkpoint_writes_float_wav_and_says_which(trained_run, tone, tmp_path,
                                                                                 capsys):
    output = tmp_path / "out.wav"
    assert main(["resynthesize", str(trained_run), str(tone), str(output), "--step", "4", "--wav-format",
                 "float"]) == 0
    assert f"wrote {output} with checkpoint step 4 (chosen step" in capsys.readouterr().out
    assert sf.info(output).subtype == "FLOAT"


def test_a_step_that_is_not_a_number_or_name_is_refused(trained_run, tone, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["resynthesize", str(trained_run), str(tone), str(tmp_path / "out.wav"), "--step", "last"])
    assert "--step 'last'; expected newest, best or a step number" in _one_error_line(capsys)


@pytest.mark.parametrize(("first", "last", "text"), [(10.0, 8.0, "20.0% lower"), (6.0, 6.5, "8.3% higher"),
                                                     (5.0, 5.0, "unchanged")])
def test_the_fit_summary_says_higher_when_the_loss_went_up(first, last, text):
    assert describe_change(first, last) == text


def test_a_full_disk_during_a_checkpoint_write_is_one_line_without_tracebacks(tmp_path, tiny_dataset):
    # Every file larger than 8 KiB fails to write (EFBIG), as on a full disk; config and metrics still fit.
    script = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192)); "
              "sys.argv = ['ddsp-train'] + sys.argv[1:]; runpy.run_module('train', run_name='__main__')")
    environment = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", script, "fit", *tiny_args(tmp_path / "run", tiny_dataset, "train.n_steps=2")],
        capture_output=True, text=True, env=environment, cwd=REPO, timeout=600,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "ddsp-train: error:" in line]
    assert len(errors) == 1 and f"could not write checkpoint {tmp_path / 'run' / 'checkpoints' / '2'}" in errors[0]
    assert "Traceback" not in done.stderr
