"""The training loop's guards (train/fit.py): a diverging run stops, a refused run is left untouched, an incomplete
first checkpoint never counts, and resume falls back past damaged checkpoints and still ends bit-identical."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.train._run import final_params
from train.checkpoint import CheckpointError, list_steps
from train.config import apply_overrides, preset
from train.fit import fit


def _config(run_dir: Path, dataset: Path, *overrides: str):
    return apply_overrides(preset("tiny"), [f"run_dir={run_dir}", f"data.dataset_dir={dataset}", *overrides])


def test_a_diverging_run_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny_dataset):
    # lr = 1e-3 * (1e30 ** step): finite at first, then the parameters blow up and the audio becomes NaN.
    config = _config(tmp_path / "run", tiny_dataset, "train.decay_rate=1e30", "train.decay_steps=1",
                     "train.checkpoint_every=1", "train.eval_every=1000", "train.log_every=1000",
                     "train.n_steps=8")
    with pytest.raises(FloatingPointError, match=r"training diverged at step \d+") as info:
        fit(config, tiny_dataset, progress=False)
    bad_step = int(re.search(r"at step (\d+)", str(info.value)).group(1))
    saved = list_steps(tmp_path / "run" / "checkpoints")
    assert saved and max(saved) < bad_step
    assert f"the last good checkpoint is step {max(saved)}" in str(info.value)
    assert all(np.all(np.isfinite(leaf)) for leaf in final_params(tmp_path / "run"))


def test_a_refused_fit_changes_nothing_in_the_run_it_refuses(tmp_path, tiny_dataset, trained_run):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    (run_dir / "dataset_statistics.json").write_text('{"trained on": "violin"}')
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        fit(_config(run_dir, tiny_dataset, "train.learning_rate=0.01"), tiny_dataset, progress=False)
    assert {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()} == before


@pytest.mark.parametrize("resume", [False, True])
def test_an_incomplete_first_checkpoint_never_counts(tmp_path, tiny_dataset, resume):
    leftover = tmp_path / "run" / "checkpoints" / "2.orbax-checkpoint-tmp-1764590000"
    (leftover / "state").mkdir(parents=True)
    (leftover / "state" / "half-written").write_bytes(b"\0" * 100)
    summary = fit(_config(tmp_path / "run", tiny_dataset, "train.n_steps=2"), tiny_dataset, resume=resume,
                  progress=False)
    assert summary["step"] == 2 and list_steps(tmp_path / "run" / "checkpoints") == [2]
    assert not leftover.exists()


def test_resume_falls_back_past_corrupt_checkpoints_and_ends_bit_identical(tmp_path, tiny_dataset, trained_run,
                                                                         caplog):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    checkpoints = run_dir / "checkpoints"
    newest = max(list_steps(checkpoints))
    for path in (checkpoints / str(newest)).rglob("*"):
        if path.is_file():
            path.write_bytes(b"garbage")
    (checkpoints / "99").mkdir()  # a stray empty step folder
    older = max(step for step in list_steps(checkpoints) if step < newest)
    fit(_config(run_dir, tiny_dataset), tiny_dataset, resume=True, progress=False)
    assert f"resumed from {checkpoints}/{older}" in caplog.text
    assert "checkpoint" in caplog.text and "99 is corrupt or incomplete" in caplog.text
    assert sorted(p.name for p in (run_dir / "checkpoints-corrupt").iterdir()) == sorted([str(newest), "99"])
    for ours, reference in zip(final_params(run_dir), final_params(trained_run), strict=True):
        np.testing.assert_array_equal(ours, reference)
