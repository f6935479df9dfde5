"""The training application end to end on the `tiny` preset: fit, resume, data parallel, evaluate, audio in/out.

These run the real command line (``python -m train``) in subprocesses where the test is about the process (exit
status, SIGKILL, device count), and in-process otherwise. One tiny offline dataset is built per session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.train._run import REPO, cli, final_params, tiny_args
from train.cli import main
from train.config import apply_overrides, preset


def test_killed_and_resumed_run_ends_bit_identical(tmp_path, tiny_dataset):
    steps = ["train.n_steps=60", "train.checkpoint_every=4", "train.eval_every=1000", "train.log_every=20"]
    straight = cli("fit", *tiny_args(tmp_path / "straight", tiny_dataset, *steps))
    assert straight.returncode == 0, straight.stderr

    killed_dir = tmp_path / "killed"
    environment = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    process = subprocess.Popen([sys.executable, "-m", "train", "fit", *tiny_args(killed_dir, tiny_dataset, *steps)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment, cwd=REPO)
    deadline = time.time() + 300
    while not (killed_dir / "checkpoints" / "8").is_dir() and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    saved = sorted(int(p.name) for p in (killed_dir / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and saved[-1] < 60

    resumed = cli("fit", "--resume", *tiny_args(killed_dir, tiny_dataset, *steps))
    assert resumed.returncode == 0, resumed.stderr
    for ours, reference in zip(final_params(killed_dir), final_params(tmp_path / "straight"), strict=True):
        np.testing.assert_array_equal(ours, reference)


def test_four_host_devices_give_the_same_loss_as_one(tmp_path, tiny_dataset):
    from train.data import load_manifest, load_split
    from train.data.dataset import write_prepared

    splits = {name: load_split(tiny_dataset, name) for name in ("train", "validation", "test")}
    splits["train"] = {key: np.concatenate([value, value]) for key, value in splits["train"].items()}
    doubled = write_prepared(tmp_path / "doubled", splits, load_manifest(tiny_dataset))
    script = (
        "import json, jax, numpy as np\n"
        "from train.config import preset, apply_overrides\n"
        "from train.fit import first_step_loss\n"
        f"config = apply_overrides(preset('tiny'), ['train.batch_size=4'])\n"
        f"print(json.dumps([len(jax.devices()), first_step_loss(config, '{doubled}')]))\n"
    )
    results = []
    for count in (1, 4):
        environment = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu",
                       "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}"}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                              timeout=600, cwd=REPO)
        assert done.returncode == 0, done.stderr
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    (one_devices, one_loss), (four_devices, four_loss) = results
    assert (one_devices, four_devices) == (1, 4)
    assert four_loss == pytest.approx(one_loss, rel=1e-5)


def test_fit_writes_metrics_config_and_checkpoints(trained_run):
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "validation"] == [0, 3, 6]
    assert all(np.isfinite(r["loss"]) for r in records)
    assert json.loads((trained_run / "config.json").read_text())["preset"] == "tiny"
    validation = {r["step"]: r["loss"] for r in records if r["split"] == "validation" and r["step"] > 0}
    best = min(validation, key=validation.get)
    # keep_checkpoints=2 newest, plus the step with the lowest validation loss
    assert sorted(int(p.name) for p in (trained_run / "checkpoints").iterdir()) == sorted({4, 6, best})


def test_evaluate_on_a_tiny_checkpoint_writes_the_report(trained_run, tiny_dataset, tmp_path):
    out_dir = tmp_path / "report"
    assert main(["evaluate", str(trained_run), "--dataset", str(tiny_dataset), "--out", str(out_dir)]) == 0
    report = (out_dir / "report.md").read_text()
    for name in ("spectrograms.png", "f0_loudness.png", "harmonic_distribution.png", "losses.png",
                 "example0_resynthesis.wav"):
        assert (out_dir / name).stat().st_size > 1000, name
        assert name in report
    audio, rate = sf.read(out_dir / "example0_resynthesis.wav")
    assert rate == 16000 and audio.shape == (preset("tiny").model.n_samples,)
    assert "spectral_loss" in report and "f0_error_cents" in report


@pytest.mark.parametrize("command", ["resynthesize", "transfer"])
def test_audio_commands_keep_rate_and_length(trained_run, tmp_path, command):
    rate, seconds = 22050, 0.7
    time_s = np.arange(int(rate * seconds)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 330.0 * time_s)
    source = tmp_path / "tone.wav"
    sf.write(source, np.stack([tone, tone], axis=1), rate, subtype="PCM_24")
    output = tmp_path / "out.wav"
    extra = ["--octave-shift", "-1", "--loudness-shift", "-3"] if command == "transfer" else []
    assert main([command, str(trained_run), str(source), str(output), *extra]) == 0
    audio, out_rate = sf.read(output)
    assert out_rate == rate and audio.shape == (len(time_s),)
    assert np.all(np.isfinite(audio))


def test_transfer_refuses_silent_and_too_short_input(trained_run, tmp_path, capsys):
    silent, short = tmp_path / "silent.wav", tmp_path / "short.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    sf.write(short, 0.5 * np.ones(800, np.float32), 16000)
    for source, message in ((silent, "is silent"), (short, "expected at least")):
        output = tmp_path / f"out_{source.stem}.wav"
        assert main(["transfer", str(trained_run), str(source), str(output)]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("ddsp-train: error:") and message in error and "\n" not in error
        assert not output.exists()


def test_bad_inputs_exit_nonzero_with_one_line(tmp_path, tiny_dataset, trained_run):
    corrupt = tmp_path / "corrupt"
    (corrupt / "checkpoints" / "5" / "state").mkdir(parents=True)
    (corrupt / "checkpoints" / "5" / "state" / "junk").write_text("not a checkpoint")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["evaluate", str(tmp_path / "missing")], "does not exist"),
        (["evaluate", str(corrupt)], "is corrupt or incomplete"),
        (["fit", "--preset", "tiny", "--set", "train.n_stepz=3"], "unknown config key 'train.n_stepz'"),
        (["fit", *tiny_args(a_file, tiny_dataset)], "is a file"),
        (["evaluate", str(trained_run), "--out", str(a_file)], "is a file"),
    ]
    for arguments, message in cases:
        done = cli(*arguments)
        assert done.returncode == 2, (arguments, done.stderr[-2000:])
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith("ddsp-train: error:") and message in lines[-1], (arguments, done.stderr[-2000:])
    assert a_file.read_text() == "x"


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path, tiny_dataset, trained_run):
    import shutil

    run_dir = tmp_path / "other"
    shutil.copytree(trained_run, run_dir)
    config = apply_overrides(preset("tiny"), [f"run_dir={run_dir}", "model.processors.harmonic.n_harmonics=12"])
    from train.checkpoint import CheckpointError
    from train.fit import fit

    with pytest.raises(CheckpointError, match="model.processors.harmonic.n_harmonics: checkpoint 8 vs config 12"):
        fit(config, tiny_dataset, resume=True, progress=False)


def test_a_config_file_of_sinusoidal_noise_and_exp_decay_reverb_trains_and_evaluates(tmp_path, tiny_dataset):
    """Another instrument, named only in a config file: it trains (validation loss falls; the random sinusoid
    frequencies make the first steps noisy, so 40 steps at 3e-3), its run writes a
    config.toml that reads back to the same config, and evaluation writes one WAV per source."""
    from train.config import load_config_file

    config_file = tmp_path / "sines.toml"
    config_file.write_text(
        "[train]\nn_steps = 40\neval_every = 40\ncheckpoint_every = 40\nlearning_rate = 3e-3\n\n"
        "[[model.processors]]\ntype = \"sinusoidal\"\nn_sinusoids = 4\nweight = 1.0\n\n"
        "[[model.processors]]\ntype = \"filtered_noise\"\nn_bands = 9\nweight = 0.1\n\n"
        "[[model.processors]]\ntype = \"exp_decay_reverb\"\nir_length = 256\n"
    )
    run_dir = tmp_path / "sines"
    assert main(["fit", "--config", str(config_file), *tiny_args(run_dir, tiny_dataset)]) == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    validation = {r["step"]: r["loss"] for r in records if r["split"] == "validation"}
    assert validation[40] < 0.95 * validation[0], validation  # measured 50.97 -> 44.40
    saved = load_config_file(run_dir / "config.toml")
    assert [entry["type"] for entry in saved.model.processors] == ["sinusoidal", "filtered_noise", "exp_decay_reverb"]
    assert saved.train.n_steps == 40 and saved.data.dataset_dir == str(tiny_dataset)
    out_dir = tmp_path / "eval"
    assert main(["evaluate", str(run_dir), "--dataset", str(tiny_dataset), "--out", str(out_dir)]) == 0
    for name in ("example0_sinusoidal.wav", "example0_noise.wav", "reverb_impulse_response.png"):
        assert (out_dir / name).stat().st_size > 0, name


def test_the_rnn_fc_decoder_and_the_z_encoder_train_end_to_end_from_the_config(tmp_path, tiny_dataset):
    """decoder = rnn_fc with z_dims = 2: the MFCC encoder is part of the trained parameters and moves."""
    import jax

    from train.checkpoint import load_trained
    from train.modeling import init_model

    run_dir = tmp_path / "rnn_fc"
    assert main(["fit", *tiny_args(run_dir, tiny_dataset, "model.decoder=rnn_fc", "model.z_dims=2",
                                     "train.n_steps=2", "train.eval_every=2", "train.checkpoint_every=2")]) == 0
    config, params, _, _ = load_trained(run_dir)
    initial, _ = init_model(config, jax.random.key(config.train.seed))
    assert params.encoder.output_layer.weight.shape == (2, config.model.hidden_size)
    assert float(np.max(np.abs(np.asarray(params.encoder.output_layer.weight - initial.encoder.output_layer.weight)))) > 0
    assert len(params.decoder.input_stacks) == 3  # f0, loudness and z each get their own MLP
