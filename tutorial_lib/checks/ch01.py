"""Checks for the exercises of notebook 01 (conditioning paradigms).

* ``check_timestep_embedding(my_timestep_embedding)``: the sinusoidal embedding
  ``(B,) -> (B, dim)``, cosines first, frequencies ``10000^(-i/half)``, exactly
  :func:`tutorial_lib.conditioning.timestep_embedding` (and diffusers with
  ``flip_sin_to_cos=True, downscale_freq_shift=0``).
* ``check_film(my_film)``: adaptive group normalisation
  ``GroupNorm(h) * (1 + scale) + shift`` with per-channel ``scale, shift`` of shape
  ``(B, C)`` broadcast over the spatial axes, as in
  :class:`tutorial_lib.conditioning.AdaptiveGroupNorm`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..conditioning import timestep_embedding
from ._core import Case, run_cases

__all__ = ["check_timestep_embedding", "check_film"]

# ------------------------------------------------------------------ time embedding

_EMB = "Exercise 1 (my_timestep_embedding)"


def _emb_cases() -> list[Case]:
    return [
        Case("t = [0, 1, 10, 500, 999], dim = 8", (torch.tensor([0, 1, 10, 500, 999]), 8)),
        Case("t = [3, 250], dim = 32", (torch.tensor([3, 250]), 32)),
        Case("float t = [0.5, 42.25], dim = 16", (torch.tensor([0.5, 42.25]), 16)),
    ]


def _planted_embeddings(t: torch.Tensor, dim: int) -> dict[str, torch.Tensor]:
    """Outputs of the usual mistakes, keyed by the hint that explains them."""
    half = dim // 2
    t = t.float()[:, None]
    i = torch.arange(half, dtype=torch.float32)
    right = torch.exp(-math.log(10000.0) * i / half)
    by_dim = torch.exp(-math.log(10000.0) * i / dim)
    rising = torch.exp(math.log(10000.0) * i / half)
    return {
        "sines and cosines are swapped: put the cosines first, [cos(w t), sin(w t)] (the "
        "convention of Stable Diffusion's U-Net, flip_sin_to_cos=True).":
            torch.cat([torch.sin(t * right), torch.cos(t * right)], -1),
        "the frequency exponent is divided by dim; divide by half = dim // 2, so the "
        "frequencies run from 1 down to (almost) 1/10000: w_i = 10000 ** (-i / half).":
            torch.cat([torch.cos(t * by_dim), torch.sin(t * by_dim)], -1),
        "your frequencies grow with i; they must shrink: w_i = 10000 ** (-i / half) "
        "(note the minus sign).":
            torch.cat([torch.cos(t * rising), torch.sin(t * rising)], -1),
        "you interleaved cos and sin (cos, sin, cos, sin, ...); concatenate instead: all "
        "the cosines, then all the sines.":
            torch.stack([torch.cos(t * right), torch.sin(t * right)], -1).flatten(1),
    }


def _diagnose_emb(case: Case, got: torch.Tensor) -> str | None:
    t, dim = case.args
    if got.shape != (t.shape[0], dim):
        return f"return one row per timestep and dim columns: shape (B, dim) = ({t.shape[0]}, {dim})."
    for hint, wrong in _planted_embeddings(t, dim).items():
        if torch.allclose(got.float(), wrong, atol=5e-4, rtol=1e-4):
            return hint
    return None


def check_timestep_embedding(fn) -> str:
    """Check ``fn(t (B,), dim) -> (B, dim)`` against :func:`timestep_embedding`."""
    return run_cases(
        _EMB,
        fn,
        timestep_embedding,
        _emb_cases(),
        atol=5e-4,  # angles reach ~1000 rad: float32 rounding differs between correct formulas
        diagnose=_diagnose_emb,
        hint="half = dim // 2; w = exp(-ln(10000) * arange(half) / half); "
        "return cat([cos(t[:, None] * w), sin(t[:, None] * w)], dim=-1).",
    )


# ------------------------------------------------------------------ FiLM / AdaGN

_FILM = "Exercise 2 (my_film)"


def _reference_film(h, scale, shift, num_groups):
    extra = (1,) * (h.ndim - 2)
    scale = scale.reshape(*scale.shape, *extra)
    shift = shift.reshape(*shift.shape, *extra)
    return F.group_norm(h, num_groups, eps=1e-5) * (1 + scale) + shift


def _film_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)

    def make(b, c, hgt, wid, groups):
        # Random features as *inputs*: any tensors will do for this exercise.
        return (
            torch.randn(b, c, hgt, wid, generator=g) * 3 + 1,
            torch.randn(b, c, generator=g),
            torch.randn(b, c, generator=g),
            groups,
        )

    return [
        Case("h (3, 4, 4, 4), 2 groups (square: C = H = W)", make(3, 4, 4, 4, 2)),
        Case("h (2, 8, 5, 3), 4 groups", make(2, 8, 5, 3, 4)),
        Case("h (1, 6, 2, 7), 3 groups", make(1, 6, 2, 7, 3)),
    ]


def _diagnose_film(case: Case, got: torch.Tensor) -> str | None:
    h, scale, shift, groups = case.args
    if got.shape != h.shape:
        return (
            f"the output has h's shape {tuple(h.shape)}: reshape scale and shift from (B, C) to "
            "(B, C, 1, 1) so they broadcast over height and width."
        )
    normed = F.group_norm(h, groups, eps=1e-5)
    c = h.shape[1]
    planted = {
        "you forgot the 1 +: the layer must be a plain GroupNorm when scale = 0, so multiply "
        "by (1 + scale), not by scale.": normed * scale[:, :, None, None] + shift[:, :, None, None],
        "scale and shift are swapped: GroupNorm(h) * (1 + scale) + shift.":
            normed * (1 + shift[:, :, None, None]) + scale[:, :, None, None],
        "you skipped the normalisation: normalise h with GroupNorm (no affine parameters) "
        "first, e.g. torch.nn.functional.group_norm(h, num_groups).":
            h * (1 + scale[:, :, None, None]) + shift[:, :, None, None],
        "the normalisation uses the wrong groups (one group = LayerNorm over C, H, W); use "
        "num_groups groups of channels.":
            F.group_norm(h, 1, eps=1e-5) * (1 + scale[:, :, None, None]) + shift[:, :, None, None],
        "the normalisation uses the wrong groups (one per channel = InstanceNorm); use "
        "num_groups groups of channels.":
            F.group_norm(h, c, eps=1e-5) * (1 + scale[:, :, None, None]) + shift[:, :, None, None],
    }
    if h.shape[1] == h.shape[3]:  # (B, 1, 1, C) broadcasts silently when C == W
        planted[
            "scale and shift are broadcast over the wrong axis: (B, C) must become (B, C, 1, 1) "
            "(one value per channel), not (B, 1, 1, C) (one value per column)."
        ] = normed * (1 + scale[:, None, None, :]) + shift[:, None, None, :]
    for hint, wrong in planted.items():
        if torch.allclose(got, wrong, atol=1e-4, rtol=1e-4):
            return hint
    return None


def check_film(fn) -> str:
    """Check ``fn(h (B, C, H, W), scale (B, C), shift (B, C), num_groups) -> (B, C, H, W)``."""
    return run_cases(
        _FILM,
        fn,
        _reference_film,
        _film_cases(),
        atol=1e-4,
        diagnose=_diagnose_film,
        hint="F.group_norm(h, num_groups) * (1 + scale[:, :, None, None]) + shift[:, :, None, None].",
    )
