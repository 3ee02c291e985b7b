"""Checks for the exercises of notebook 04 (the conditioned ResBlock and the U-Net).

* ``check_tokens_to_map(my_tokens_to_map)``: turn the attention part's tokens
  ``(B, H*W, C_out)`` back into a feature map ``(B, C_out, H, W)``, the inverse of
  ``h.flatten(2).transpose(1, 2)``, taking the channel count from the tokens and not
  from the block's input ``x_in`` ``(B, C_in, H, W)`` (the source post's bug, notebook 04 §5).
* ``check_x0_from_eps(my_x0_from_eps)``: the predicted clean image
  ``x̂_0 = (x_t - sqrt(1 - ᾱ) ε̂) / sqrt(ᾱ)`` for a float ᾱ or one ᾱ per example
  ``(B,)``, as :meth:`tutorial_lib.schedule.NoiseSchedule.predict_x0` computes it.

Images, noises and tokens are random tensors used as *inputs*.
"""

from __future__ import annotations

import torch

from ._core import Case, run_cases

__all__ = ["check_tokens_to_map", "check_x0_from_eps"]

# ------------------------------------------------------------------------------ tokens -> map

_MAP = "Exercise 1 (my_tokens_to_map)"


def _reference_tokens_to_map(tokens, x_in):
    b, _, height, width = x_in.shape
    return tokens.transpose(1, 2).reshape(b, tokens.shape[-1], height, width)


def _map_cases() -> list[Case]:
    def make(b, c_in, c_out, height, width):
        # Distinct values everywhere, so any scrambling shows.
        tokens = torch.arange(float(b * height * width * c_out)).reshape(b, height * width, c_out)
        return tokens, torch.zeros(b, c_in, height, width)

    return [
        Case("in_channels = out_channels = 4, 3x5 map", make(2, 4, 4, 3, 5)),
        Case("in_channels 8 -> out_channels 4 (a block that narrows), 4x4 map", make(2, 8, 4, 4, 4)),
        Case("in_channels 2 -> out_channels 6, 2x3 map", make(1, 2, 6, 2, 3)),
    ]


def _diagnose_map(case: Case, got: torch.Tensor) -> str | None:
    tokens, x_in = case.args
    b, _, height, width = x_in.shape
    c = tokens.shape[-1]
    if got.shape == (b, c, height, width) and torch.equal(got, tokens.reshape(b, c, height, width)):
        return (
            "a plain reshape reads the tokens' memory in the wrong order and mixes pixels with "
            "channels. Undo the flatten step by step: tokens.transpose(1, 2) gives (B, C, H*W), "
            "then reshape to (B, C, H, W)."
        )
    if got.shape == (b, height, width, c):
        return "channels first: the result is (B, C, H, W), not (B, H, W, C); transpose before reshaping."
    return None


def check_tokens_to_map(fn) -> str:
    """Check ``fn(tokens (B, H*W, C_out), x_in (B, C_in, H, W)) -> (B, C_out, H, W)``."""
    return run_cases(
        _MAP,
        fn,
        _reference_tokens_to_map,
        _map_cases(),
        atol=0,
        rtol=0,
        diagnose=_diagnose_map,
        hint="take B, H, W from x_in but the channel count from the tokens (C_out = "
        "tokens.shape[-1]; the block's input may have a different C_in): "
        "tokens.transpose(1, 2).reshape(B, C_out, H, W).",
    )


# ------------------------------------------------------------------------------ x0 from eps

_X0 = "Exercise 2 (my_x0_from_eps)"


def _as_column(alpha_bar, like: torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(alpha_bar, dtype=like.dtype)
    return a.reshape(-1, *(1,) * (like.ndim - 1)) if a.ndim == 1 else a


def _reference_x0(x_t, eps, alpha_bar):
    a = _as_column(alpha_bar, x_t)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def _x0_cases() -> list[Case]:
    g = torch.Generator().manual_seed(4)

    def pair(*shape):
        x0 = torch.rand(*shape, generator=g) * 2 - 1
        eps = torch.randn(*shape, generator=g)
        return x0, eps

    x0, eps = pair(2, 3, 4, 4)
    a = 0.3
    x_t = a**0.5 * x0 + (1 - a) ** 0.5 * eps
    x0b, epsb = pair(3, 3, 4, 5)
    ab = torch.tensor([0.9, 0.5, 0.05])
    x_tb = ab.sqrt()[:, None, None, None] * x0b + (1 - ab).sqrt()[:, None, None, None] * epsb
    return [
        Case("alpha_bar = 0.3 (a float)", (x_t, eps, a)),
        Case("alpha_bar = tensor([0.9, 0.5, 0.05]), one per image of a (3, 3, 4, 5) batch",
             (x_tb, epsb, ab)),
        Case("alpha_bar = 0.999 (almost clean)", (x_t, eps, 0.999)),
    ]


def _diagnose_x0(case: Case, got: torch.Tensor) -> str | None:
    x_t, eps, alpha_bar = case.args
    a = _as_column(alpha_bar, x_t)
    if got.shape != x_t.shape:
        return (
            "x̂_0 has x_t's shape. With one alpha_bar per image (shape (B,)) reshape it to "
            "(B, 1, 1, 1) so it broadcasts over channels and pixels."
        )
    planted = {
        "no square roots: x_t = sqrt(ᾱ) x_0 + sqrt(1 - ᾱ) ε, so x̂_0 = (x_t - sqrt(1 - ᾱ) ε̂) / sqrt(ᾱ).":
            (x_t - (1 - a) * eps) / a,
        "the noise term needs a square root: subtract sqrt(1 - ᾱ) ε̂, not (1 - ᾱ) ε̂.":
            (x_t - (1 - a) * eps) / a.sqrt(),
        "divide by sqrt(ᾱ), not by ᾱ.": (x_t - (1 - a).sqrt() * eps) / a,
        "you forgot to divide by sqrt(ᾱ): x_t - sqrt(1 - ᾱ) ε̂ is sqrt(ᾱ) x̂_0, not x̂_0.":
            x_t - (1 - a).sqrt() * eps,
        "ᾱ and 1 - ᾱ are swapped: the signal is scaled by sqrt(ᾱ), the noise by sqrt(1 - ᾱ).":
            (x_t - a.sqrt() * eps) / (1 - a).sqrt(),
        "sign: the noise is removed, x_t MINUS sqrt(1 - ᾱ) ε̂.": (x_t + (1 - a).sqrt() * eps) / a.sqrt(),
    }
    for hint, wrong in planted.items():
        if torch.allclose(got, wrong, atol=1e-5, rtol=1e-4):
            return hint
    return None


def check_x0_from_eps(fn) -> str:
    """Check ``fn(x_t, eps, alpha_bar) -> x̂_0`` (ε-prediction to x̂_0, DDIM eq. 12)."""
    return run_cases(
        _X0,
        fn,
        _reference_x0,
        _x0_cases(),
        atol=1e-5,
        diagnose=_diagnose_x0,
        hint="x̂_0 = (x_t - sqrt(1 - ᾱ) ε̂) / sqrt(ᾱ); make ᾱ a tensor and, if it has one value "
        "per image, reshape it to (B, 1, 1, 1).",
    )
