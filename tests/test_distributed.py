"""Data-parallel training (torchrun + DDP, gloo on CPU): two ranks stay identical."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tutorial_lib import distributed

WORKER = Path(__file__).with_name("_ddp_worker.py")


def _torchrun(out: Path, nproc: int, *extra: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parents[1])}
    # --standalone picks a free rendezvous port, so parallel test runs do not collide
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           str(WORKER), str(out), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_cpu_ranks_keep_identical_weights(tmp_path):
    _torchrun(tmp_path / "ddp", 2)
    r0, r1 = (json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["weights_sha256"] == r1["weights_sha256"]  # DDP averaged the gradients: same weights
    assert (tmp_path / "ddp" / "final" / "unet.safetensors").is_file()  # rank 0 wrote the files
    assert not (tmp_path / "ddp" / "rank1").exists()
    # Resuming under torchrun with the same number of ranks continues from the checkpoint.
    state = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and len(state["rank_generators"]) == 2


def test_single_process_setup_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = distributed.setup()
    assert not ctx.enabled and ctx.is_main and ctx.share(32) == 32
    module = torch.nn.Linear(2, 2)
    assert ctx.wrap(module) is module and ctx.mean(1.5) == 1.5
    assert distributed.gather_objects(ctx, "x") == ["x"]


def test_global_batch_must_divide_over_the_ranks():
    ctx = distributed.Distributed(rank=0, world_size=3)
    with pytest.raises(ValueError, match="batch_size=32 must be divisible"):
        ctx.share(32)
