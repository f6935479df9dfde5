"""benchmarks/faults.py in small: kill -9 real training processes during checkpoint writes; every resume must end
bit-identical to the uninterrupted run (the script itself runs 20 kills; here 2)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.train._run import REPO


def test_runs_killed_during_checkpoint_writes_resume_bit_identical(tiny_dataset):
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "faults.py"), "--kills", "2", "--steps", "6", "--dataset",
         str(tiny_dataset), "--max-delay-ms", "30"],
        capture_output=True, text=True, cwd=REPO, timeout=1200, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].endswith("identical resumes: 2/2")
