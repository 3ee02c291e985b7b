"""Checks for the exercises of notebook 06 (classifier-free guidance).

* ``check_cfg_combine(my_cfg)``: the CFG combination
  ``my_cfg(eps_uncond, eps_cond, scale) -> ε_u + γ (ε_c − ε_u)`` (Ho & Salimans 2022,
  eq. 6), checked against ``tutorial_lib.guidance.cfg_combine``. Recognised mistakes:
  conditional and unconditional swapped (equivalently the weights γ and 1 − γ
  exchanged), the weight of ε_u written γ − 1 instead of 1 − γ, γ missing on ε_c, the
  conditional prediction as the base (which is scale γ + 1), the base forgotten, the
  scale ignored, a normalised average.
* ``check_rescale_noise_cfg(my_rescale)``: guidance rescale
  ``my_rescale(noise_cfg, noise_pred_text, guidance_rescale)`` (Lin et al., WACV 2024, eqs.
  15-17), checked against ``tutorial_lib.guidance.rescale_noise_cfg`` (which equals
  diffusers'). Recognised mistakes: one standard deviation for the whole batch
  instead of one per sample, a std per channel, the ratio inverted, φ and 1 − φ
  exchanged, the mix with φ forgotten.

The CFG cases use real predictions: the exact ε_u and ε_c of notebook 05's 2-D
Gaussian mixture (``GaussianMixture.eps``) at several noise levels, whose
conditional and unconditional parts differ, so a swap cannot go unnoticed; plus one
image-shaped case whose inputs are random tensors (only the arithmetic is checked).
The rescale cases use random image-shaped tensors as *inputs*, with per-sample scales
that differ a lot, so a batch-wide standard deviation is caught.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..guidance import cfg_combine, rescale_noise_cfg
from ..mixture import example_mixture_2d
from ._core import Case, run_cases

__all__ = ["check_cfg_combine", "check_rescale_noise_cfg"]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.to(b.dtype), b, atol=1e-5, rtol=1e-4))


# ------------------------------------------------------------------------------- CFG

_CFG = "Exercise 1 (my_cfg)"


@lru_cache(maxsize=None)
def _mixture_eps() -> tuple[tuple[torch.Tensor, torch.Tensor, str], ...]:
    """(ε_u, ε_c, description) of the 2-D mixture at three noise levels, float32."""
    mixture = example_mixture_2d()
    g = torch.Generator().manual_seed(6)
    out = []
    for t in (50, 300, 700):
        x = mixture.sample_noised(6, t, generator=g)  # real noisy samples x_t, (6, 2)
        eps_u = mixture.eps(x, t).float()
        eps_c = mixture.eps(x, t, c=1).float()
        out.append((eps_u, eps_c, f"t={t}"))
    return tuple(out)


def _cfg_cases() -> list[Case]:
    (u1, c1, d1), (u2, c2, d2), (u3, c3, d3) = _mixture_eps()
    g = torch.Generator().manual_seed(60)
    u_img = torch.randn(2, 3, 4, 4, generator=g)
    c_img = u_img + 0.3 * torch.randn(2, 3, 4, 4, generator=g)
    return [
        Case(f"mixture, {d2}, scale 3", (u2, c2, 3.0)),
        Case(f"mixture, {d1}, scale 7.5", (u1, c1, 7.5)),
        Case(f"mixture, {d3}, scale 1 (no guidance: the conditional prediction)", (u3, c3, 1.0)),
        Case(f"mixture, {d2}, scale 0 (the unconditional prediction)", (u2, c2, 0.0)),
        Case("image-shaped (2, 3, 4, 4) inputs, scale 5", (u_img, c_img, 5.0)),
    ]


def _diagnose_cfg(case: Case, got: torch.Tensor) -> str | None:
    u, c, s = case.args
    if got.shape != u.shape:
        return "return a tensor of eps_uncond's shape: the combination is elementwise."
    candidates = [
        (
            c + s * (u - c),
            "you swapped the conditional and the unconditional prediction (equivalently, the weights "
            "γ and 1 − γ are exchanged). Start from eps_uncond and move towards eps_cond: "
            "eps_uncond + scale * (eps_cond - eps_uncond).",
        ),
        (
            (s - 1) * u + s * c,
            "the weight of eps_uncond is 1 − γ, not γ − 1: (1 − γ)·ε_u + γ·ε_c, which is "
            "ε_u + γ(ε_c − ε_u). For γ > 1 it is negative: guidance pushes away from ε_u.",
        ),
        (
            (1 - s) * u + c,
            "γ is missing on eps_cond: (1 − γ)·ε_u + γ·ε_c — the two weights must add up to 1.",
        ),
        (
            c + s * (c - u),
            "the base is eps_uncond, not eps_cond: eps_cond + γ(eps_cond − eps_uncond) is guidance "
            "with scale γ + 1 in the usual convention (γ = 1 must return eps_cond).",
        ),
        (
            s * (c - u),
            "you returned only the guidance direction γ(ε_c − ε_u); add it to the base eps_uncond.",
        ),
        (
            (u + s * c) / (1 + s),
            "CFG is an extrapolation, not an average: do not normalise by 1 + γ.",
        ),
    ]
    for expected_wrong, message in candidates:
        if _close(got, expected_wrong) and not _close(got, cfg_combine(u, c, s)):
            return message
    if s not in (0.0, 1.0) and (_close(got, c) or _close(got, u)):
        return "the scale is ignored: the result must change with `scale` (γ)."
    return None


def check_cfg_combine(fn) -> str:
    """Check ``fn(eps_uncond, eps_cond, scale) -> ε_u + γ (ε_c − ε_u)`` against ``cfg_combine``."""
    return run_cases(
        _CFG,
        fn,
        cfg_combine,
        _cfg_cases(),
        diagnose=_diagnose_cfg,
        hint="eps_uncond + scale * (eps_cond - eps_uncond); scale 1 gives eps_cond, 0 gives eps_uncond.",
    )


# --------------------------------------------------------------------------- rescale

_RESCALE = "Exercise 2 (my_rescale)"


def _rescale_inputs(
    seed: int, scales: tuple[float, ...], gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ε̃, ε_c) image-shaped, from random inputs with very different scales per sample."""
    g = torch.Generator().manual_seed(seed)
    B = len(scales)
    s = torch.tensor(scales).view(B, 1, 1, 1)
    # channel-dependent spread, so a per-channel std differs from the per-sample one
    ch = torch.tensor([1.0, 0.5, 2.0]).view(1, 3, 1, 1)
    eps_u = s * ch * torch.randn(B, 3, 6, 6, generator=g)
    eps_c = eps_u + 0.4 * s * ch * torch.randn(B, 3, 6, 6, generator=g)
    return cfg_combine(eps_u, eps_c, gamma), eps_c


def _rescale_cases() -> list[Case]:
    cfg1, text1 = _rescale_inputs(61, (1.0, 3.0, 0.3), 7.5)
    cfg2, text2 = _rescale_inputs(62, (2.0, 0.5), 4.0)
    return [
        Case("3 samples of different scales, phi=0.7, guidance 7.5", (cfg1, text1, 0.7)),
        Case("phi=1 (full rescale)", (cfg1, text1, 1.0)),
        Case("phi=0 (no rescale: noise_cfg unchanged)", (cfg2, text2, 0.0)),
        Case("2 samples, phi=0.5, guidance 4", (cfg2, text2, 0.5)),
    ]


def _diagnose_rescale(case: Case, got: torch.Tensor) -> str | None:
    cfg, text, phi = case.args
    if got.shape != cfg.shape:
        return "return a tensor of noise_cfg's shape."
    dims = list(range(1, cfg.ndim))

    def mix(rescaled, weight=phi):
        return weight * rescaled + (1 - weight) * cfg

    per_sample = cfg * (text.std(dim=dims, keepdim=True) / cfg.std(dim=dims, keepdim=True))
    candidates = [
        (
            mix(cfg * (text.std() / cfg.std())),
            "one standard deviation per *sample*, not for the whole batch: "
            "std(dim=[1, 2, 3], keepdim=True) (every dim except the batch).",
        ),
        (
            mix(cfg * (text.std(dim=dims[1:], keepdim=True) / cfg.std(dim=dims[1:], keepdim=True))),
            "you took a std per channel; the rescale uses one std per sample over all of "
            "(C, H, W): std(dim=[1, 2, 3], keepdim=True).",
        ),
        (
            mix(cfg * (cfg.std(dim=dims, keepdim=True) / text.std(dim=dims, keepdim=True))),
            "the ratio is upside down: multiply noise_cfg by std(noise_pred_text) / std(noise_cfg), "
            "so its std becomes that of the text prediction.",
        ),
        (
            mix(per_sample, 1 - phi),
            "φ and 1 − φ are exchanged: φ · rescaled + (1 − φ) · noise_cfg (φ = 0 must return noise_cfg).",
        ),
        (
            per_sample,
            "you returned the fully rescaled prediction; mix it with the original by φ: "
            "φ · rescaled + (1 − φ) · noise_cfg.",
        ),
    ]
    expected = rescale_noise_cfg(cfg, text, phi)
    for wrong, message in candidates:
        if _close(got, wrong) and not _close(got, expected):
            return message
    return None


def check_rescale_noise_cfg(fn) -> str:
    """Check ``fn(noise_cfg, noise_pred_text, guidance_rescale)`` against ``rescale_noise_cfg``."""
    return run_cases(
        _RESCALE,
        fn,
        rescale_noise_cfg,
        _rescale_cases(),
        diagnose=_diagnose_rescale,
        hint="σ_c = std of noise_pred_text and σ̃ = std of noise_cfg, per sample over (C, H, W); "
        "rescaled = noise_cfg · σ_c / σ̃; return φ · rescaled + (1 − φ) · noise_cfg.",
    )
