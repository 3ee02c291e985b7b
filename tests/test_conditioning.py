"""Tests for tutorial_lib.conditioning (notebook 01)."""

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding

from tutorial_lib.conditioning import (
    AdaptiveGroupNorm,
    ConcatConditioning,
    SinusoidalTimeEmbedding,
    TimestepMLP,
    timestep_embedding,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- sinusoidal time embedding --------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2, 8, 9, 32, 128])
@pytest.mark.parametrize("max_period", [10000, 100])
def test_timestep_embedding_equals_diffusers(dim, max_period):
    t = torch.tensor([0, 1, 7, 500, 999])
    ours = SinusoidalTimeEmbedding(dim, max_period)(t)
    ref = get_timestep_embedding(
        t, dim, flip_sin_to_cos=True, downscale_freq_shift=0, max_period=max_period
    )
    assert ours.shape == (5, dim)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_timestep_embedding_float_timesteps_and_layout():
    t = torch.tensor([0.0, 2.5])
    emb = timestep_embedding(t, 6)
    # cosines first: at t = 0 the first half is 1, the second half 0
    torch.testing.assert_close(emb[0], torch.tensor([1.0, 1, 1, 0, 0, 0]))
    ref = get_timestep_embedding(t, 6, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(emb, ref)


def test_timestep_embedding_errors():
    with pytest.raises(ValueError, match="t must have shape"):
        timestep_embedding(torch.zeros(2, 1), 8)
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        timestep_embedding([1, 2], 8)
    with pytest.raises(ValueError, match="dim must be positive"):
        SinusoidalTimeEmbedding(0)
    with pytest.raises(TypeError, match="dim must be an int"):
        SinusoidalTimeEmbedding(8.0)
    with pytest.raises(ValueError, match="max_period"):
        SinusoidalTimeEmbedding(8, max_period=1)


def test_timestep_mlp_shape_and_grad():
    torch.manual_seed(0)
    mlp = TimestepMLP(16, 24)
    out = mlp(torch.tensor([3, 900]))
    assert out.shape == (2, 24)
    out.sum().backward()
    assert all(p.grad is not None for p in mlp.parameters())


# -- concatenation ----------------------------------------------------------------


def test_concat_conditioning_broadcasts_condition():
    x = torch.randn(2, 3, 4, 5, generator=_gen())
    cond = torch.randn(2, 6, generator=_gen(1))
    cat = ConcatConditioning(6)
    out = cat(x, cond)
    assert out.shape == (2, 9, 4, 5) and cat.out_channels(3) == 9
    torch.testing.assert_close(out[:, :3], x)
    for i in range(4):
        for j in range(5):
            torch.testing.assert_close(out[:, 3:, i, j], cond)


def test_concat_conditioning_errors():
    cat = ConcatConditioning(6)
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="cond must have shape"):
        cat(x, torch.randn(2, 5))
    with pytest.raises(ValueError, match="batch size"):
        cat(x, torch.randn(3, 6))
    with pytest.raises(ValueError, match="x must have shape"):
        cat(torch.randn(2, 3, 4), torch.randn(2, 6))
    with pytest.raises(TypeError, match="cond must be a torch.Tensor"):
        cat(x, None)


# -- adaptive group norm -----------------------------------------------------------


def _group_norm_by_hand(h, groups, eps=1e-5):
    b, c = h.shape[:2]
    g = h.reshape(b, groups, -1)
    mean = g.mean(dim=-1, keepdim=True)
    var = g.var(dim=-1, unbiased=False, keepdim=True)
    return ((g - mean) / torch.sqrt(var + eps)).reshape(h.shape)


def test_adagn_is_plain_groupnorm_at_init():
    ada = AdaptiveGroupNorm(8, 5, num_groups=4)
    h = torch.randn(3, 8, 4, 4, generator=_gen())
    cond = torch.randn(3, 5, generator=_gen(1))
    torch.testing.assert_close(ada(h, cond), F.group_norm(h, 4, eps=1e-5))


def test_adagn_equals_hand_formula():
    torch.manual_seed(0)
    ada = AdaptiveGroupNorm(8, 5, num_groups=2)
    with torch.no_grad():
        ada.proj.weight.normal_(generator=_gen(2))
        ada.proj.bias.normal_(generator=_gen(3))
    h = torch.randn(3, 8, 4, 6, generator=_gen())
    cond = torch.randn(3, 5, generator=_gen(1))
    params = cond @ ada.proj.weight.T + ada.proj.bias  # (B, 2C)
    scale, shift = params[:, :8], params[:, 8:]
    expected = _group_norm_by_hand(h, 2) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
    torch.testing.assert_close(ada(h, cond), expected, atol=1e-5, rtol=1e-5)


def test_adagn_errors():
    with pytest.raises(ValueError, match="num_groups=3 must divide num_channels=8"):
        AdaptiveGroupNorm(8, 4, num_groups=3)
    ada = AdaptiveGroupNorm(8, 4, num_groups=2)
    h = torch.randn(2, 8, 3, 3)
    with pytest.raises(ValueError, match="h must have shape"):
        ada(torch.randn(2, 6, 3, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="cond must have shape"):
        ada(h, torch.randn(2, 5))
    with pytest.raises(ValueError, match="batch size"):
        ada(h, torch.randn(1, 4))
