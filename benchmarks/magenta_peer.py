"""magenta/ddsp 3.7.0 on TensorFlow, timed on our inputs: the peer side of ``benchmarks/versus_magenta.py``.

It runs in its OWN virtual environment (ddsp 3.7.0 needs TensorFlow 2.15 and numpy < 2; the project's does not
carry them). ddsp 3.7.0's own metadata pins (tensorflow<=2.11, numpy<1.24, ...) cannot be installed on Python 3.11,
so everything goes in with ``--no-deps`` from a lock of what its code imports (TF 2.15 is the last release whose
``tf.keras`` is Keras 2, which ddsp's layers need)::

    python3.11 -m venv /tmp/magenta-venv
    /tmp/magenta-venv/bin/pip install --no-deps -r benchmarks/magenta_peer_requirements.txt

Then ``python benchmarks/versus_magenta.py --peer-python /tmp/magenta-venv/bin/python`` runs it as a server::

    /tmp/magenta-venv/bin/python benchmarks/magenta_peer.py INPUTS.npz [--no-train-step]

It builds every case, prints one JSON line ``{"ready": [[block, pass], ...], "versions": {...}}``, then answers
each request line ``{"block": ..., "pass": ..., "repeats": n}`` on stdin with ``{"ms": [...]}`` on stdout (every
timed call; a case is called twice to trace and warm up before its first timing), until stdin closes. So the
wrapper can alternate ours and magenta's case by case, seconds apart.

``INPUTS.npz`` (written by ``versus_magenta.py``): ``f0_hz``, ``amplitude``, ``loudness_db`` ``(batch, n_frames)``;
``harmonic_distribution`` ``(batch, n_frames, n_harmonics)``; ``noise_magnitudes`` ``(batch, n_frames, n_bands)``;
``audio``, ``target`` ``(batch, n_samples)``; ``impulse_response`` ``(batch, ir_size)``; ``sample_rate``,
``noise_window_size``, ``hidden_size``.

Every case is a ``tf.function``. The blocks are
the same functions and sizes as ours: ``synths.Harmonic`` (normalised below Nyquist, ``scale_fn=None``),
``synths.FilteredNoise`` (window 257), ``effects.Reverb`` (given IR, dry added), ``spectral_ops.compute_loudness``
(n_fft 2048, centred), ``spectral_ops.compute_mfcc`` (1024/256, 128 mels, 30 coefficients) and
``losses.SpectralLoss`` (L1, magnitudes and log magnitudes, 2048..64). fwd+bwd is the gradient of the sum of
squares of the output (of the loss itself for the loss) with respect to every input. The training step is
magenta's autoencoder (``F0LoudnessPreprocessor`` -> ``RnnFcDecoder`` with GRU and stacks of ``hidden_size`` ->
Harmonic + FilteredNoise + Add -> trainable Reverb -> SpectralLoss), Adam 3e-4 with global-norm clipping 3.0, the
body of magenta's ``Trainer.step_fn`` in one ``tf.function``. magenta's decoder has an MLP per input and an output
MLP fed with their skip (3 layers each), more work per frame than ours (one input layer).
"""

import argparse
import json
import os
import sys
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# ddsp.spectral_ops and ddsp.losses import `crepe` at module level but use it only in functions not called here; the
# real package downloads model weights at install time, so an empty stand-in is registered instead.
sys.modules.setdefault("crepe", types.ModuleType("crepe"))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import ddsp  # noqa: E402


def _import_training():
    """Import magenta's decoder, preprocessor and autoencoder without ``ddsp.training.__init__``.

    That ``__init__`` imports every submodule (data pipelines, cloud helpers, plotting), whose dependencies are not
    installed; the package is registered bare, and the two cloud modules imported at load time get empty stand-ins.
    TF 2.15's tracing also checks ``isinstance(value, SupportsTracingProtocol)`` on Keras-tracked dicts, which raises
    with typing_extensions >= 4.13; that one check is made to answer "no" when it raises, as older versions did.
    """
    package = types.ModuleType("ddsp.training")
    package.__path__ = [os.path.join(os.path.dirname(ddsp.__file__), "training")]
    sys.modules["ddsp.training"] = package
    ddsp.training = package
    for name in ("hypertune", "google.cloud", "google.cloud.storage"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    sys.modules["google.cloud"].storage = sys.modules["google.cloud.storage"]

    from tensorflow.python.types import trace

    protocol = trace.SupportsTracingProtocol

    class _Lenient(type):
        def __instancecheck__(cls, instance):
            try:
                return isinstance(instance, protocol)
            except TypeError:
                return False

    trace.SupportsTracingProtocol = _Lenient("SupportsTracingProtocol", (), {})
    from ddsp.training import decoders, preprocessing
    from ddsp.training.models.autoencoder import Autoencoder

    return decoders, preprocessing, Autoencoder


def _time(fn, args, repeats, warm_up):
    for _ in range(2 if warm_up else 0):
        _block(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(fn(*args))
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _block(result):
    for tensor in tf.nest.flatten(result):
        tensor.numpy()


def _forward_and_gradient(fn):
    """``(forward, gradient of the sum of squares w.r.t. every argument)`` as tf.functions."""

    @tf.function
    def gradient(*args):
        with tf.GradientTape() as tape:
            for arg in args:
                tape.watch(arg)
            value = tf.reduce_sum(tf.square(fn(*args)))
        return tape.gradient(value, list(args))

    return tf.function(fn), gradient


def block_cases(inputs):
    """``(block, pass, tf.function, args)`` for every block, with our sizes."""
    c = {k: tf.constant(v) for k, v in inputs.items() if v.ndim > 0}
    sample_rate = int(inputs["sample_rate"])
    n_samples = int(c["audio"].shape[1])
    harmonic = ddsp.synths.Harmonic(n_samples=n_samples, sample_rate=sample_rate, scale_fn=None,
                                    normalize_below_nyquist=True)
    noise = ddsp.synths.FilteredNoise(n_samples=n_samples, window_size=int(inputs["noise_window_size"]),
                                      scale_fn=None)
    reverb = ddsp.effects.Reverb(trainable=False, add_dry=True)
    loss = ddsp.losses.SpectralLoss(loss_type="L1", mag_weight=1.0, logmag_weight=1.0)
    blocks = [
        ("harmonic", lambda a, d, f: harmonic(a[..., None], d, f[..., None]),
         (c["amplitude"], c["harmonic_distribution"], c["f0_hz"])),
        ("filtered noise", noise, (c["noise_magnitudes"],)),
        ("reverb", reverb, (c["audio"], c["impulse_response"])),
        ("loudness", lambda x: ddsp.spectral_ops.compute_loudness(
            x, sample_rate=sample_rate, frame_rate=250, n_fft=2048, use_tf=True, padding="center"), (c["audio"],)),
        ("MFCC", lambda x: ddsp.spectral_ops.compute_mfcc(
            x, fft_size=1024, overlap=0.75, mel_bins=128, mfcc_bins=30, sample_rate=sample_rate), (c["audio"],)),
    ]
    cases = []
    for name, fn, args in blocks:
        forward, gradient = _forward_and_gradient(fn)
        cases.append((name, "fwd", forward, args))
        if name != "MFCC":
            cases.append((name, "fwd+bwd", gradient, args))

    @tf.function
    def loss_gradient(target, pred):
        with tf.GradientTape() as tape:
            tape.watch(pred)
            value = loss(target, pred)
        return tape.gradient(value, pred)

    cases.append(("spectral loss", "fwd", tf.function(loss), (c["target"], c["audio"])))
    cases.append(("spectral loss", "fwd+bwd", loss_gradient, (c["target"], c["audio"])))
    return cases


def train_step_case(inputs):
    """magenta's autoencoder training step at our sizes: ``(block, pass, tf.function, args)``."""
    decoders, preprocessing, Autoencoder = _import_training()
    sample_rate = int(inputs["sample_rate"])
    n_samples = inputs["audio"].shape[1]
    n_frames = inputs["f0_hz"].shape[1]
    n_harmonics = inputs["harmonic_distribution"].shape[2]
    n_bands = inputs["noise_magnitudes"].shape[2]
    hidden = int(inputs["hidden_size"])
    preprocessor = preprocessing.F0LoudnessPreprocessor(
        time_steps=n_frames, frame_rate=250, sample_rate=sample_rate, compute_loudness=False
    )
    decoder = decoders.RnnFcDecoder(
        rnn_channels=hidden, rnn_type="gru", ch=hidden, layers_per_stack=3, input_keys=("ld_scaled", "f0_scaled"),
        output_splits=(("amps", 1), ("harmonic_distribution", n_harmonics), ("noise_magnitudes", n_bands)),
    )
    harmonic = ddsp.synths.Harmonic(n_samples=n_samples, sample_rate=sample_rate, normalize_below_nyquist=True,
                                    name="harmonic")
    noise = ddsp.synths.FilteredNoise(n_samples=n_samples, window_size=int(inputs["noise_window_size"]),
                                      name="filtered_noise")
    dag = [
        (harmonic, ["amps", "harmonic_distribution", "f0_hz"]),
        (noise, ["noise_magnitudes"]),
        (ddsp.processors.Add(name="add"), ["filtered_noise/signal", "harmonic/signal"]),
        (ddsp.effects.Reverb(name="reverb", reverb_length=inputs["impulse_response"].shape[1], trainable=True),
         ["add/signal"]),
    ]
    model = Autoencoder(
        preprocessor=preprocessor, encoder=None, decoder=decoder,
        processor_group=ddsp.processors.ProcessorGroup(dag=dag),
        losses=[ddsp.losses.SpectralLoss(loss_type="L1", mag_weight=1.0, logmag_weight=1.0)],
    )
    optimizer = tf.keras.optimizers.Adam(3e-4)

    @tf.function
    def step(features):
        with tf.GradientTape() as tape:
            _, losses = model(features, return_losses=True, training=True)
        grads = tape.gradient(losses["total_loss"], model.trainable_variables)
        grads, _ = tf.clip_by_global_norm(grads, 3.0)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return losses["total_loss"]

    features = {name: tf.constant(inputs[name]) for name in ("audio", "f0_hz", "loudness_db")}
    return ("train step", "fwd+bwd+Adam", step, (features,))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", help="npz written by benchmarks/versus_magenta.py")
    parser.add_argument("--no-train-step", action="store_true", help="serve the blocks only")
    args = parser.parse_args(argv)
    with np.load(args.inputs, allow_pickle=False) as data:
        inputs = {key: data[key] for key in data.files}
    cases = block_cases(inputs)
    if not args.no_train_step:
        cases.append(train_step_case(inputs))
    by_key = {(block, mode): (fn, fn_args) for block, mode, fn, fn_args in cases}
    versions = {"ddsp": ddsp.__version__, "tensorflow": tf.__version__, "numpy": np.__version__,
                "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()}
    print(json.dumps({"ready": list(by_key), "versions": versions}), flush=True)
    warmed = set()
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["block"], request["pass"])
        fn, fn_args = by_key[key]
        times = _time(fn, fn_args, int(request["repeats"]), warm_up=key not in warmed)
        warmed.add(key)
        print(json.dumps({"ms": times}), flush=True)


if __name__ == "__main__":
    main()
