"""The training-loop skeleton every model of the course shares, and its pieces (EMA, checkpoints).

Introduced in the training appendix notebook (11); :mod:`tutorial_lib.train` runs the
denoiser and the two classifiers through it. One step of :func:`train_loop`, given the
model's per-batch loss L(θ):

    θ ← AdamW(θ, ∇_θ L)                         (under torchrun: ∇ averaged over the ranks by DDP)
    θ_ema ← d θ_ema + (1 − d) θ                  (:class:`EMA`, for the models that keep one)

with the learning rate of the config's schedule (:meth:`BaseTrainConfig.learning_rate`), a
tqdm bar, a log line every ``log_every`` steps and a checkpoint every ``checkpoint_every``
(written by rank 0; ``--resume`` continues from it).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed
from .train_configs import BaseTrainConfig

__all__ = ["EMA", "TrainingRun", "train_loop", "start_run", "loss_summary", "weights_digest", "save_json", "contiguous_copy"]


class EMA:
    """Exponential moving average of a module's parameters: ``θ_ema ← d θ_ema + (1 − d) θ``.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` so early averages
    are not dominated by the random initialisation.
    """

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.num_updates = 0

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for pe, p in zip(self.module.parameters(), module.parameters(), strict=False):
            pe.lerp_(p.detach(), 1 - d)
        for be, b in zip(self.module.buffers(), module.buffers(), strict=False):
            be.copy_(b)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.num_updates = state["num_updates"]
        self.module.load_state_dict(state["module"])


class TrainingRun:
    """What :func:`train_loop` needs of a run: config, process context, optimizer, EMAs, step, clock.

    Subclasses build the models and the optimizer and say how a checkpoint is written
    (``state_dict``) and read (``load_state_dict``).
    """

    def __init__(self, cfg: BaseTrainConfig, ctx: distributed.Distributed):
        self.cfg, self.ctx = cfg, ctx
        self.opt: torch.optim.Optimizer | None = None
        self.params: list[torch.nn.Parameter] = []  # clipped to ``grad_clip`` when it is > 0
        self.grad_clip = 0.0
        self.emas: list[tuple[EMA, torch.nn.Module]] = []  # (average, the module it follows)
        self.step, self.elapsed = 0, 0.0

    def resume(self, ckpt: Path) -> None:
        """Continue from ``ckpt`` (a :meth:`state_dict` saved by the loop) when it exists."""
        if ckpt.exists():
            self.load_state_dict(torch.load(ckpt, weights_only=True))
            if self.ctx.is_main:
                print(f"resumed from {ckpt} at step {self.step}")


def train_loop(run: TrainingRun, batch_loss: Callable[[], torch.Tensor], end: int, out_dir: Path, desc: str,
               progress: bool = True, log_file: bool = True,
               after_step: Callable[[], None] | None = None) -> list[float]:
    """The training-loop skeleton every model shares: steps ``run.step .. end``; returns the losses.

    Each step sets the learning rate (``cfg.learning_rate``), takes ``loss = batch_loss()`` (the
    model's loss on a fresh batch), back-propagates it (under torchrun DDP averages the
    gradients), clips the gradients to ``run.grad_clip`` (if > 0), steps the optimizer and
    updates the EMAs; then it logs (``log_every`` steps: the tqdm bar and, with ``log_file``,
    ``out_dir/log.jsonl``), calls ``after_step`` and, every ``checkpoint_every`` steps and at
    ``end``, saves ``out_dir/checkpoint.pt`` (rank 0 writes it; every rank takes part).
    """
    cfg, ctx = run.cfg, run.ctx
    losses: list[float] = []
    log = open(out_dir / "log.jsonl", "a") if ctx.is_main and log_file else None
    bar = tqdm(total=end, initial=run.step, disable=not progress, desc=desc, dynamic_ncols=True)
    t_last = time.time()
    while run.step < end:
        lr = cfg.learning_rate(run.step)
        for group in run.opt.param_groups:
            group["lr"] = lr
        loss = batch_loss()
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        if run.grad_clip:
            torch.nn.utils.clip_grad_norm_(run.params, run.grad_clip)
        run.opt.step()
        for ema, module in run.emas:
            ema.update(module)
        run.step += 1
        now = time.time()
        run.elapsed, t_last = run.elapsed + now - t_last, now
        losses.append(ctx.mean(loss.item()))
        bar.update(1)
        if ctx.is_main and (run.step % cfg.log_every == 0 or run.step == end):
            _log_step(bar, log, losses[-cfg.log_every:], lr, run)
        if after_step is not None:
            after_step()
        if run.step % cfg.checkpoint_every == 0 or run.step == end:
            state = run.state_dict()  # every rank takes part (the denoiser gathers the generators)
            if ctx.is_main:
                _atomic_torch_save(state, out_dir / "checkpoint.pt")
    bar.close()
    if log is not None:
        log.close()
    return losses


def _log_step(bar, log, recent: list[float], lr: float, run: TrainingRun) -> None:
    """The mean loss of the last ``log_every`` steps on the bar and, if open, in ``log.jsonl``."""
    mean = sum(recent) / len(recent)
    bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}")
    if log is not None:
        log.write(json.dumps({"step": run.step, "loss": mean, "lr": lr, "elapsed_s": round(run.elapsed, 1)}) + "\n")
        log.flush()


def start_run(cfg: BaseTrainConfig, out_dir: str | Path, max_steps: int | None) -> tuple[Path, int]:
    """Threads and the global seed of a run (the same initial weights on every rank); ``(out_dir, end)``."""
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    return Path(out_dir), cfg.steps if max_steps is None else min(cfg.steps, max_steps)


def loss_summary(losses: list[float], log_every: int) -> dict:
    """``final_loss`` (the mean of the last ``log_every`` losses), ``first_loss`` and ``losses``."""
    tail = losses[-log_every:] or [float("nan")]
    return {"final_loss": sum(tail) / len(tail), "first_loss": losses[0] if losses else float("nan"),
            "losses": losses}


def weights_digest(*modules: torch.nn.Module) -> str:
    """sha256 of the modules' parameters and buffers: equal on every rank of a data-parallel run."""
    h = hashlib.sha256()
    for m in modules:
        for k, v in m.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def save_json(path: Path, obj) -> None:
    """``obj`` as indented JSON with sorted keys (configs, metrics, summaries)."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def contiguous_copy(sd: dict) -> dict:
    """A state dict of detached contiguous copies, as safetensors' ``save_file`` needs."""
    return {k: v.detach().contiguous().clone() for k, v in sd.items()}
