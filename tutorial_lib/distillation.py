"""Guidance distillation: one network evaluation per step instead of CFG's two.

Introduced in notebook 09. Stage one of Meng et al. (2023, "On Distillation of Guided
Diffusion Models"): a student that takes the guidance scale γ as an input learns the
teacher's *guided* prediction,

    ε̃_γ(x_t, t, c) = ε_u + γ (ε_c − ε_u)                    (the two-pass CFG teacher)
    L = E_{x_0, c, t, γ, z} ‖ε_student(x_t, t, c, γ) − ε̃_γ(x_t, t, c)‖²,
    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) z,   γ ~ U[γ_min, γ_max],

with (x_0, c) drawn from the data. Sampling then calls the student once per step (the
conditional branch only, γ fed in), half of CFG's cost. What is lost is the unconditional
branch itself: there is no ε_u left for a negative prompt to replace, which is why
guidance-distilled models ignore negative prompts. (Stage two of the paper also distils the
number of steps; not done here.)

The course's student is a small MLP for the 2-D mixtures, whose oracle is the teacher: it
trains in seconds on a CPU, and any gap to two-pass CFG is the student's, not the teacher's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from . import _checks
from .conditioning import timestep_embedding
from .mixture import GaussianMixture, OracleDenoiser

__all__ = ["DistillationConfig", "GuidanceStudent", "distill_guidance", "save_student", "load_student",
           "STUDENT_DIR"]

#: The shipped student of ``example_mixture_2d`` (``python -m tutorial_lib.distillation`` rewrites it).
STUDENT_DIR = Path(__file__).resolve().parent / "assets" / "models" / "mixture_student"


@dataclass(frozen=True)
class DistillationConfig:
    """Options of :func:`distill_guidance` (defaults: a few seconds on one CPU thread)."""

    steps: int = field(default=1500, metadata={"low": 1})
    batch_size: int = field(default=512, metadata={"low": 1})
    learning_rate: float = field(default=3e-3, metadata={"low": 0.0, "open_low": True})
    gamma_min: float = field(default=1.0, metadata={"low": 0.0})
    gamma_max: float = field(default=7.0, metadata={"low": 0.0})
    hidden: int = field(default=128, metadata={"low": 1})
    seed: int = field(default=0, metadata={"low": 0})

    def __post_init__(self):
        _checks.fields(self)
        _checks.that(self.gamma_min <= self.gamma_max, f"need gamma_min <= gamma_max, got {self.gamma_min}, {self.gamma_max}")


class GuidanceStudent(nn.Module):
    """ε_student(x_t, t, c, γ): an MLP on [x_t, e(t), c, e(γ)] (sinusoidal e, as the U-Net's time
    embedding; Meng et al. embed w the same way).

    Args:
        dim: d, the data's dimension.
        context_dim: the width of the context rows (a mixture's ``C + 1`` one-hot slots).
        hidden: the MLP's width.

    Call ``student(x_t, t, context, guidance_scale)`` with ``x_t`` ``(B, d)``, ``t`` ``(B,)``,
    ``context`` ``(B, N, context_dim)`` (token 0 is read, as the oracle does) and
    ``guidance_scale`` ``(B,)``; :meth:`at` fixes γ and gives the course's denoiser protocol.
    """

    prediction_type = "epsilon"
    TIME_FEATURES, GAMMA_FEATURES = 32, 16

    def __init__(self, dim: int, context_dim: int, hidden: int = 128):
        super().__init__()
        self.context_dim = context_dim
        width = dim + self.TIME_FEATURES + context_dim + self.GAMMA_FEATURES
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                guidance_scale: torch.Tensor) -> torch.Tensor:
        features = [x_t.float(), timestep_embedding(t, self.TIME_FEATURES), context[:, 0].float(),
                    timestep_embedding(guidance_scale * 100, self.GAMMA_FEATURES)]  # γ·100: periods ~ γ steps
        return self.net(torch.cat(features, dim=-1)).to(x_t.dtype)

    def at(self, guidance_scale: float) -> Callable:
        """The student at a fixed γ as a denoiser ``(x_t, t, context) -> ε`` for the sampler
        (sample it with the default guider: one pass, the conditional branch)."""
        gamma = _checks.real("guidance_scale", guidance_scale, low=0.0)
        student = self

        class _AtScale:
            prediction_type, context_dim = "epsilon", self.context_dim

            @torch.no_grad()
            def __call__(self, x_t, t, context):
                return student(x_t, t, context, torch.full((x_t.shape[0],), gamma, device=x_t.device))

        return _AtScale()


def _teacher_targets(teacher: OracleDenoiser, x_t, t, cond, null, gamma) -> torch.Tensor:
    """ε̃_γ = ε_u + γ (ε_c − ε_u), one batched teacher call."""
    with torch.no_grad():
        eps_c, eps_u = teacher(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, null])).chunk(2)
    return (eps_u + gamma[:, None] * (eps_c - eps_u)).float()


def distill_guidance(mixture: GaussianMixture, config: DistillationConfig | None = None,
                     progress: bool = True) -> tuple[GuidanceStudent, list[float]]:
    """Train a :class:`GuidanceStudent` on ``mixture``'s exact two-pass CFG (module docstring).

    Returns the student (in eval mode) and the loss of every step.
    """
    _checks.instance("mixture", mixture, GaussianMixture, "a GaussianMixture")
    config = _checks.instance("config", config or DistillationConfig(), DistillationConfig, "a DistillationConfig")
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # the student's initial weights
    student = GuidanceStudent(mixture.dim, mixture.context_dim, config.hidden)
    teacher, abar = OracleDenoiser(mixture), mixture.schedule.alphas_cumprod.double()
    optimizer = torch.optim.Adam(student.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    b, losses = config.batch_size, []
    for _ in tqdm(range(config.steps), desc="distilling", disable=not progress):
        x0, component = mixture.sample_with_components(b, None, generator)
        t = torch.randint(0, abar.numel(), (b,), generator=generator)
        z = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
        x_t = abar[t, None].sqrt() * x0 + (1 - abar[t, None]).sqrt() * z
        gamma = config.gamma_min + (config.gamma_max - config.gamma_min) * torch.rand(b, generator=generator)
        cond = mixture.condition_context(mixture.labels[component], b, dtype=torch.float64)
        target = _teacher_targets(teacher, x_t, t, cond, mixture.condition_context(None, b, torch.float64),
                                  gamma.double())
        loss = torch.nn.functional.mse_loss(student(x_t.float(), t, cond, gamma), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return student.eval(), losses


def save_student(student: GuidanceStudent, config: DistillationConfig, directory: str | Path = STUDENT_DIR) -> Path:
    """Write ``student.safetensors``, ``student_config.json`` and the folder's ``MANIFEST.sha256``."""
    from safetensors.torch import save_file

    from .pretrained import write_manifest

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in student.state_dict().items()}, directory / "student.safetensors")
    shape = {"dim": student.net[-1].out_features, "context_dim": student.context_dim,
             "hidden": student.net[0].out_features}
    (directory / "student_config.json").write_text(json.dumps({"model": shape, "training": asdict(config)},
                                                              indent=1) + "\n")
    return write_manifest(directory)


def load_student(directory: str | Path = STUDENT_DIR) -> GuidanceStudent:
    """The shipped (or saved) student, its files checked against the folder's manifest first
    (a missing or modified file raises ``pretrained.AssetVerificationError`` naming it)."""
    from safetensors.torch import load_file

    from .pretrained import AssetVerificationError, verify_assets

    directory = Path(directory)
    bad = {name: status for name, status in verify_assets(directory, required=False).items() if status != "ok"}
    _checks.that(not bad, f"{directory}: {bad}; rewrite it with `python -m tutorial_lib.distillation`", AssetVerificationError)
    shape = json.loads((directory / "student_config.json").read_text())["model"]
    student = GuidanceStudent(shape["dim"], shape["context_dim"], shape["hidden"])
    student.load_state_dict(load_file(directory / "student.safetensors"))
    return student.eval().requires_grad_(False)


def main(argv=None) -> int:
    """``python -m tutorial_lib.distillation [--out DIR] [--steps N]``: train the student of
    ``example_mixture_2d`` (defaults of :class:`DistillationConfig`) and save it."""
    from .mixture import example_mixture_2d
    from .utils import torch_threads

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(STUDENT_DIR))
    parser.add_argument("--steps", type=int, default=DistillationConfig().steps)
    args = parser.parse_args(argv)
    config = DistillationConfig(steps=args.steps)
    with torch_threads(1):
        student, losses = distill_guidance(example_mixture_2d(), config)
    print(f"trained {len(losses)} steps; mean loss of the last 100: {sum(losses[-100:]) / 100:.5f}")
    print("wrote", save_student(student, config, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
