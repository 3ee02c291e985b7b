"""The checks of notebook 01 pass a right answer, explain a stub, and name planted mistakes."""

import math

import pytest
import torch
import torch.nn.functional as F

from tutorial_lib.checks import ExerciseCheckFailed, ch01, check_film, check_timestep_embedding
from tutorial_lib.conditioning import AdaptiveGroupNorm


def stub(*args):
    raise NotImplementedError


def test_checks_are_exported():
    assert set(ch01.__all__) == {"check_timestep_embedding", "check_film"}


# ----------------------------------------------------------------------- time embedding


def emb_solution(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def emb_with(order="cos-sin", divisor="half", sign=-1, interleave=False):
    def fn(t, dim):
        half = dim // 2
        d = half if divisor == "half" else dim
        freqs = torch.exp(sign * math.log(10000.0) * torch.arange(half) / d)
        a = t.float()[:, None] * freqs
        parts = [torch.cos(a), torch.sin(a)] if order == "cos-sin" else [torch.sin(a), torch.cos(a)]
        if interleave:
            return torch.stack(parts, -1).flatten(1)
        return torch.cat(parts, -1)
    return fn


def test_embedding_passes_on_solution():
    assert "all 3 cases pass" in check_timestep_embedding(emb_solution)


def test_embedding_other_correct_formulas_pass():
    def with_pow(t, dim):
        freqs = 10000.0 ** (-torch.arange(dim // 2) / (dim // 2))
        a = t[:, None] * freqs
        return torch.cat([a.cos(), a.sin()], -1)

    assert "pass" in check_timestep_embedding(with_pow)


def test_embedding_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_timestep_embedding(stub)


@pytest.mark.parametrize(
    "mistake, message",
    [
        (emb_with(order="sin-cos"), "sines and cosines are swapped"),
        (emb_with(divisor="dim"), "exponent is divided by dim"),
        (emb_with(sign=+1), "frequencies grow"),
        (emb_with(interleave=True), "interleaved"),
        (lambda t, dim: emb_solution(t, dim)[:, : dim // 2], r"shape \(B, dim\)"),
        (lambda t, dim: emb_solution(t, dim) * 2, "Hint: half = dim // 2"),
    ],
    ids=["sin-first", "exponent-by-dim", "rising", "interleaved", "half-width", "other"],
)
def test_embedding_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_timestep_embedding(mistake)


def test_embedding_reference_matches_diffusers():
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([0, 7, 999])
    expected = get_timestep_embedding(t, 16, flip_sin_to_cos=True, downscale_freq_shift=0)
    assert torch.allclose(emb_solution(t, 16), expected, atol=1e-6)


# ----------------------------------------------------------------------- FiLM


def film_solution(h, scale, shift, num_groups):
    return F.group_norm(h, num_groups) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]


def test_film_passes_on_solution():
    assert "all 3 cases pass" in check_film(film_solution)


def test_film_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_film(stub)


@pytest.mark.parametrize(
    "mistake, message",
    [
        (lambda h, s, b, g: F.group_norm(h, g) * s[:, :, None, None] + b[:, :, None, None], "forgot the 1 +"),
        (lambda h, s, b, g: F.group_norm(h, g) * (1 + b[:, :, None, None]) + s[:, :, None, None], "swapped"),
        (lambda h, s, b, g: h * (1 + s[:, :, None, None]) + b[:, :, None, None], "skipped the normalisation"),
        (lambda h, s, b, g: F.group_norm(h, 1) * (1 + s[:, :, None, None]) + b[:, :, None, None], "LayerNorm"),
        (lambda h, s, b, g: F.group_norm(h, h.shape[1]) * (1 + s[:, :, None, None]) + b[:, :, None, None],
         "InstanceNorm"),
        (lambda h, s, b, g: F.group_norm(h, g) * (1 + s[:, None, None, :]) + b[:, None, None, :], "wrong axis"),
        (lambda h, s, b, g: F.group_norm(h, g) * (1 + s) + b, "your function raised RuntimeError"),
    ],
    ids=["no-one-plus", "swapped", "no-norm", "layernorm", "instancenorm", "wrong-axis", "no-reshape"],
)
def test_film_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_film(mistake)


def test_film_reference_matches_adaptive_group_norm():
    g = torch.Generator().manual_seed(0)
    layer = AdaptiveGroupNorm(8, 5, num_groups=4)
    with torch.no_grad():
        layer.proj.weight.copy_(torch.randn(16, 5, generator=g))
        layer.proj.bias.copy_(torch.randn(16, generator=g))
    h, cond = torch.randn(2, 8, 3, 3, generator=g), torch.randn(2, 5, generator=g)
    scale, shift = layer.scale_shift(cond)
    with torch.no_grad():
        assert torch.allclose(film_solution(h, scale, shift, 4), layer(h, cond), atol=1e-5)
        assert torch.allclose(ch01._reference_film(h, scale, shift, 4), layer(h, cond), atol=1e-5)
