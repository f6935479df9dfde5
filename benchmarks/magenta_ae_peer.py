"""magenta/ddsp 3.7.0's own solo-instrument autoencoder, trained on a prepared dataset of ours, so that resynthesis
quality can be compared at equal data and budget: the peer side of ``benchmarks/quality.py``.

It runs in magenta's OWN virtual environment (the one ``benchmarks/magenta_peer.py`` describes: TF 2.15, ddsp 3.7.0
installed with ``--no-deps`` from ``benchmarks/magenta_peer_requirements.txt``)::

    python benchmarks/magenta_ae_peer.py PREPARED_DIR OUT_DIR [--steps 800] [--batch 8] [--crop 16000]
        [--harmonics 60] [--hidden 256] [--ir 4000] [--lr 1e-3] [--loudness-shift -20.7] [--seed 0]

PREPARED_DIR is one of our prepared datasets (``ddsp-train prepare``): ``train``/``validation``/``test`` with audio
(N, 64000), f0_hz and loudness_db (N, 1000) at 250 frames/s. The model is built as
ddsp/training/gin/models/solo_instrument.gin builds it (no gin): F0LoudnessPreprocessor (reading the given loudness,
shifted by --loudness-shift dB to magenta's NSynth reference; ours uses ref_db 0), RnnFcDecoder (GRU + 3-layer
input/output stacks, skip of the inputs), Harmonic + FilteredNoise (window 0) + Add + trainable Reverb,
SpectralLoss (2048..64, L1, mag + logmag). Training: magenta's Trainer optimiser (Adam, ExponentialDecay(lr, 1000,
0.98)), clip 3.0, batches of random frame-aligned crops; ``--seed`` seeds TensorFlow (initialisation, noise) and
the batch order. Writes OUT_DIR/test_resynthesis.npz (``audio``: the test split rendered at full length from its own
f0/loudness) and OUT_DIR/history.json (losses, step times).

Measured on a 2-core CPU at the defaults: ~0.32 s per step (0.59 s CPU), 800 steps in ~4.5 min.
"""
import os
import sys
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# ddsp.spectral_ops and ddsp.losses import `crepe` at module level but use it only in
# functions not called here; a bare module stands in for it.
sys.modules.setdefault("crepe", types.ModuleType("crepe"))
import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import ddsp  # noqa: E402
# ddsp/training/__init__.py imports every submodule (data, evaluators, plotting, cloud...), whose dependencies
# (hypertune, google-cloud-storage, tensorflow_datasets, note_seq, mir_eval, matplotlib) are not in the peer venv.
# Register ddsp.training as a bare package (its __init__ not run) and stub the two modules that cloud.py
# (imported by train_util, imported by trainers/model) needs at import time; none of them is called here.
_pkg = types.ModuleType('ddsp.training'); _pkg.__path__ = [os.path.join(os.path.dirname(ddsp.__file__), 'training')]
sys.modules['ddsp.training'] = _pkg; ddsp.training = _pkg
for _name in ('hypertune', 'google.cloud', 'google.cloud.storage'):
  try:
    __import__(_name)
  except ImportError:
    sys.modules[_name] = types.ModuleType(_name)
if not hasattr(sys.modules['google.cloud'], 'storage'):
  sys.modules['google.cloud'].storage = sys.modules['google.cloud.storage']
# TF 2.15's tf.function tracing calls isinstance(value, trace.SupportsTracingProtocol) on arguments and captures;
# with typing_extensions 4.16 that raises "this __dict__ descriptor does not support '_DictWrapper' objects" for
# Keras-tracked dicts (wrapt proxies), so neither magenta's Trainer.train_step nor a plain tf.function over the
# model traces. Make that one check fall back to "no" when it raises; from_value then unwraps the proxy
# (`if hasattr(value, "__wrapped__")`), as it would with an older typing_extensions.
from tensorflow.python.types import trace as _trace  # noqa: E402
_OrigProto = _trace.SupportsTracingProtocol
_PROXIES_SEEN = set()


class _SafeProtoMeta(type):
  def __instancecheck__(cls, inst):
    try:
      return isinstance(inst, _OrigProto)
    except TypeError:
      _PROXIES_SEEN.add(type(inst).__name__)
      return False


class _SafeSupportsTracingProtocol(metaclass=_SafeProtoMeta):
  pass


_trace.SupportsTracingProtocol = _SafeSupportsTracingProtocol
from ddsp.training import decoders, preprocessing, trainers  # noqa: E402
from ddsp.training.models.autoencoder import Autoencoder  # noqa: E402

HOP = 64
SR = 16000


def parse_args():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("prepared_dir", type=Path)
  ap.add_argument("out_dir", type=Path)
  ap.add_argument("--steps", type=int, default=800)
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--crop", type=int, default=16000, help="samples per training crop (multiple of 64)")
  ap.add_argument("--harmonics", type=int, default=60)
  ap.add_argument("--hidden", type=int, default=256)
  ap.add_argument("--ir", type=int, default=4000)
  ap.add_argument("--lr", type=float, default=1e-3)
  ap.add_argument("--loudness-shift", type=float, default=-20.7)
  ap.add_argument("--seed", type=int, default=0)
  return ap.parse_args()


A = parse_args()
CROP, BATCH, N_STEPS, LD_SHIFT = A.crop, A.batch, A.steps, A.loudness_shift
N_FR = CROP // HOP


def build_model(n_samples, time_steps):
  preproc = preprocessing.F0LoudnessPreprocessor(time_steps=time_steps, frame_rate=250, sample_rate=SR,
                                                 compute_loudness=False)
  dec = decoders.RnnFcDecoder(rnn_channels=A.hidden, rnn_type='gru', ch=A.hidden, layers_per_stack=3,
                              input_keys=('ld_scaled', 'f0_scaled'),
                              output_splits=(('amps', 1), ('harmonic_distribution', A.harmonics), ('noise_magnitudes', 65)))
  harmonic = ddsp.synths.Harmonic(n_samples=n_samples, sample_rate=SR, normalize_below_nyquist=True,
                                  scale_fn=ddsp.core.exp_sigmoid, name='harmonic')
  noise = ddsp.synths.FilteredNoise(n_samples=n_samples, window_size=0, scale_fn=ddsp.core.exp_sigmoid,
                                    name='filtered_noise')
  add = ddsp.processors.Add(name='add')
  reverb = ddsp.effects.Reverb(name='reverb', reverb_length=A.ir, trainable=True)
  dag = [(harmonic, ['amps', 'harmonic_distribution', 'f0_hz']),
         (noise, ['noise_magnitudes']),
         (add, ['filtered_noise/signal', 'harmonic/signal']),
         (reverb, ['add/signal'])]
  pg = ddsp.processors.ProcessorGroup(dag=dag)
  loss = ddsp.losses.SpectralLoss(loss_type='L1', mag_weight=1.0, logmag_weight=1.0)
  model = Autoencoder(preprocessor=preproc, encoder=None, decoder=dec, processor_group=pg, losses=[loss])
  return model, harmonic, noise


def crop(d, rng):
  start = int(rng.integers(0, d['audio'].shape[1] // HOP - N_FR + 1))
  return {'audio': d['audio'][:, start * HOP:start * HOP + CROP],
          'f0_hz': d['f0_hz'][:, start:start + N_FR],
          'loudness_db': d['loudness_db'][:, start:start + N_FR]}


def to_tf(b):
  return {'audio': tf.constant(b['audio'], tf.float32), 'f0_hz': tf.constant(b['f0_hz'], tf.float32),
          'loudness_db': tf.constant(b['loudness_db'] + LD_SHIFT, tf.float32)}


def main():
  tf.random.set_seed(A.seed)
  tr = {k: np.load(A.prepared_dir / 'train.npz')[k] for k in ('audio', 'f0_hz', 'loudness_db')}
  va = {k: np.load(A.prepared_dir / 'validation.npz')[k] for k in ('audio', 'f0_hz', 'loudness_db')}
  n = len(tr['audio'])
  nv = min(16, len(va['audio']))
  va = {k: v[:nv] for k, v in va.items()}
  va_crop = to_tf(crop(va, np.random.default_rng(A.seed)))
  va_full = to_tf(va)
  print(f"{A.prepared_dir}: train {n} examples, validation {nv} (1 s crop), steps {N_STEPS}, batch {BATCH}, "
        f"threads intra={tf.config.threading.get_intra_op_parallelism_threads()} "
        f"inter={tf.config.threading.get_inter_op_parallelism_threads()}", flush=True)

  model, harmonic, noise = build_model(CROP, N_FR)
  strategy = tf.distribute.get_strategy()  # default strategy (single CPU device)
  trainer = trainers.Trainer(model, strategy, learning_rate=A.lr, lr_decay_steps=1000, lr_decay_rate=0.98,
                             grad_clip_norm=3.0)

  # Trainer.train_step (a tf.function calling strategy.run on the tf.function step_fn) fails to trace here
  # (TF 2.15 + typing_extensions 4.16: "this __dict__ descriptor does not support '_DictWrapper' objects"), so
  # the body of Trainer.step_fn is repeated verbatim in one tf.function, with the Trainer's own optimizer.
  opt = trainer.optimizer

  @tf.function
  def train_step(batch):
    with tf.GradientTape() as tape:
      _, losses = model(batch, return_losses=True, training=True)
    grads = tape.gradient(losses['total_loss'], model.trainable_variables)
    grads, _ = tf.clip_by_global_norm(grads, trainer.grad_clip_norm)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    return losses

  @tf.function
  def val_loss(batch):
    _, losses = model(batch, return_losses=True, training=True)  # training=True only so the loss is computed
    return losses['total_loss']

  # batches: shuffled epochs (rng seed A.seed); crop window at step s from default_rng([A.seed, s])
  order_rng = np.random.default_rng(A.seed)
  order, pos = order_rng.permutation(n), 0
  hist = {'train': [], 'val': [], 'step_wall_s': [], 'step_cpu_s': []}
  t_start, c_start = time.perf_counter(), time.process_time()
  for step in range(1, N_STEPS + 1):
    if pos + BATCH > n:
      order, pos = order_rng.permutation(n), 0
    idx = np.sort(order[pos:pos + BATCH]); pos += BATCH
    b = to_tf(crop({k: v[idx] for k, v in tr.items()}, np.random.default_rng([A.seed, step])))
    t0, c0 = time.perf_counter(), time.process_time()
    losses = train_step(b)
    loss = float(losses['total_loss'].numpy())
    hist['step_wall_s'].append(time.perf_counter() - t0)
    hist['step_cpu_s'].append(time.process_time() - c0)
    hist['train'].append((step, loss))
    if step == 1:
      print(f"step 1 (trace+build) {hist['step_wall_s'][0]:.1f}s wall, {hist['step_cpu_s'][0]:.1f}s cpu, "
            f"loss {loss:.4f}; params {sum(int(np.prod(v.shape)) for v in model.trainable_variables)}", flush=True)
      v = float(val_loss(va_crop).numpy())
      hist['val'].append((0, v))  # after 1 step (model variables only exist after the first call)
      print(f"val after step 1: {v:.4f}; tracing proxies unwrapped: {sorted(_PROXIES_SEEN)}", flush=True)
    if step % 100 == 0 or step == N_STEPS:
      v = float(val_loss(va_crop).numpy())
      hist['val'].append((step, v))
      w = np.array(hist['step_wall_s'][max(1, step - 100):step])
      print(f"step {step} train {loss:.4f} val(1s crops) {v:.4f}  elapsed {time.perf_counter() - t_start:.1f}s  "
            f"median step {np.median(w):.3f}s  lr {float(opt.learning_rate.numpy()):.6f} iters {int(opt.iterations.numpy())}",
            flush=True)
  train_wall = time.perf_counter() - t_start
  train_cpu = time.process_time() - c_start
  sw = np.array(hist['step_wall_s']); sc = np.array(hist['step_cpu_s'])
  timing = dict(train_wall_s=train_wall, train_cpu_s=train_cpu, steps=N_STEPS,
                step1_wall_s=float(sw[0]), step1_cpu_s=float(sc[0]),
                wall_per_step_incl_all=train_wall / N_STEPS, cpu_per_step_incl_all=train_cpu / N_STEPS,
                median_step_wall_after_warmup=float(np.median(sw[10:])),
                mean_step_wall_after_warmup=float(np.mean(sw[10:])),
                median_step_cpu_after_warmup=float(np.median(sc[10:])),
                mean_step_cpu_after_warmup=float(np.mean(sc[10:])),
                loadavg_end=os.getloadavg())
  print("timing", json.dumps(timing), flush=True)
  A.out_dir.mkdir(parents=True, exist_ok=True)
  model.save_weights(str(A.out_dir / 'weights'))

  # full 4 s validation loss (same trained weights, synths/preprocessor switched to 64000 samples / 1000 frames)
  model.preprocessor.time_steps = 1000
  harmonic.n_samples = 64000
  noise.n_samples = 64000
  _, vl = model(va_full, return_losses=True, training=True)
  v_full = float(vl['total_loss'].numpy())
  print(f"final validation loss on full 4 s notes: {v_full:.4f}", flush=True)

  # resynthesis of the test split from its own f0 / loudness, full length
  te = np.load(A.prepared_dir / 'test.npz')
  feats = {'f0_hz': tf.constant(te['f0_hz'], tf.float32),
           'loudness_db': tf.constant(te['loudness_db'] + LD_SHIFT, tf.float32)}
  pred = model(feats, training=False)['audio_synth'].numpy().astype(np.float32)
  np.savez(A.out_dir / 'test_resynthesis.npz', audio=pred)
  print(f"test split resynthesised: {pred.shape} -> {A.out_dir / 'test_resynthesis.npz'}", flush=True)
  hist['timing'] = timing
  hist['val_full_4s_final'] = v_full
  (A.out_dir / 'history.json').write_text(json.dumps(hist))


if __name__ == '__main__':
  main()
