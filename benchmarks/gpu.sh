#!/usr/bin/env bash
# The GPU benchmarks behind the README's GPU tables, in one script. Run from the repository root in an environment
# with ddsp-jax and a CUDA build of jax installed (`pip install -e '.[cuda]'`) and the CREPE weights fetched
# (`python -m ddsp_core.crepe_weights fetch`); torchcrepe is timed beside ours when it is importable.
#
#   bash benchmarks/gpu.sh                 # everything: CREPE tiny and full, the training step, its Pallas/bfloat16 variants
#   bash benchmarks/gpu.sh crepe-tiny      # one part: crepe-tiny, crepe-full, train or train-variants
#   CREPE_ARGS="--frames 500 --batch 250 --repeats 1" bash benchmarks/gpu.sh crepe-tiny   # a quick try on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(crepe-tiny crepe-full train train-variants)
for part in "${parts[@]}"; do
  case "$part" in
    crepe-tiny | crepe-full)
      # 32000 frames per timed call, 4000 per network call: large enough to keep the GPU busy
      "$python" benchmarks/crepe.py --models "${part#crepe-}" ${CREPE_ARGS:---frames 32000 --batch 4000 --repeats 3} ;;
    train)
      # the seed configuration (batch 32 x 4 s), pure path; a step that does not finish in 4 minutes is reported
      timeout 240 "$python" benchmarks/train_step.py --batch 32 --steps 10 --unroll 1 8 --paths pure \
        || echo "train_step.py exited with status $?" ;;
    train-variants)
      # the fused Pallas GRU (ddsp_core/gru_pallas.py, never compiled on a GPU before this) and the bfloat16
      # decoder, beside the scan at unroll 8, batch 32
      timeout 300 "$python" benchmarks/train_step.py --batch 32 --steps 10 --unroll 8 --paths pure --skip-gru \
        --gru-impl scan pallas --decoder-dtype float32 bfloat16 || echo "train_step.py exited with status $?" ;;
    *) echo "unknown part '$part' (expected crepe-tiny, crepe-full, train or train-variants)" >&2; exit 2 ;;
  esac
done
