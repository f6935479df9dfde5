"""Which checkpoint is loaded (train/checkpoint.py): newest, best or a step; damaged ones are skipped and named."""

from __future__ import annotations

import json
import shutil

import pytest

from train.checkpoint import CheckpointError, CorruptCheckpointError, list_steps, load


def _validation_losses(run_dir) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["split"] == "validation" and r["step"] > 0}


def test_best_is_the_kept_checkpoint_with_the_lowest_validation_loss(trained_run):
    losses = _validation_losses(trained_run)
    best_step = min(losses, key=losses.get)
    assert best_step in list_steps(trained_run / "checkpoints")
    loaded = load(trained_run, "best")
    assert (loaded.step, loaded.validation_loss) == (best_step, pytest.approx(losses[best_step]))
    assert loaded.describe().startswith(f"checkpoint step {best_step} (best")
    assert load(trained_run, "newest").step == max(list_steps(trained_run / "checkpoints"))


def test_a_damaged_newest_checkpoint_is_skipped_and_reported_as_corrupt(tmp_path, trained_run):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    newest = max(list_steps(run_dir / "checkpoints"))
    shutil.rmtree(run_dir / "checkpoints" / str(newest) / "state")
    (run_dir / "checkpoints" / "50").mkdir()
    (run_dir / "checkpoints" / "7.orbax-checkpoint-tmp-99").mkdir()
    loaded = load(run_dir, "newest")
    assert loaded.step == max(step for step in list_steps(run_dir / "checkpoints") if step < newest)
    assert len(loaded.skipped) == 2 and all("is corrupt or incomplete" in reason for reason in loaded.skipped)
    assert "2 skipped as corrupt" in loaded.describe()
    with pytest.raises(CorruptCheckpointError, match=f"{newest} is corrupt or incomplete"):
        load(run_dir, newest)  # a step asked for by number is never substituted
    with pytest.raises(CheckpointError, match=r"no checkpoint step 7 .* available steps"):
        load(run_dir, 7)
