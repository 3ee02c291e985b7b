"""Tests for tutorial_lib.attention (notebook 03)."""

import pytest
import torch
import torch.nn as nn

from tutorial_lib.attention import (
    CrossAttention,
    SelfAttention,
    attention_flops,
    capture_attention,
    cell_attention_shares,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _inputs(b=2, n_img=12, n_txt=7, qd=16, cd=10, seed=0):
    g = _gen(seed)
    x = torch.randn(b, n_img, qd, generator=g)
    ctx = torch.randn(b, n_txt, cd, generator=g)
    mask = torch.ones(b, n_txt, dtype=torch.bool)
    mask[0, 4:] = False  # example 0 has 4 real tokens, example 1 all 7
    return x, ctx, mask


def _pair(module_factory):
    torch.manual_seed(0)
    math_mod = module_factory()
    sdpa_mod = module_factory()
    sdpa_mod.load_state_dict(math_mod.state_dict())
    math_mod.attention_path, sdpa_mod.attention_path = "math", "sdpa"
    return math_mod.eval(), sdpa_mod.eval()


# -- the two paths agree ---------------------------------------------------------------


@pytest.mark.parametrize("num_heads", [1, 2, 4, 8])
@pytest.mark.parametrize("use_mask", [False, True])
def test_cross_attention_math_equals_sdpa(num_heads, use_mask):
    x, ctx, mask = _inputs()
    a, b = _pair(lambda: CrossAttention(16, 10, num_heads=num_heads))
    m = mask if use_mask else None
    torch.testing.assert_close(a(x, ctx, m), b(x, ctx, m), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_heads,head_dim", [(2, None), (3, 5), (4, 8)])
def test_self_attention_math_equals_sdpa(num_heads, head_dim):
    x, _, _ = _inputs(qd=12)
    a, b = _pair(lambda: SelfAttention(12, num_heads=num_heads, head_dim=head_dim))
    torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-5)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 7:] = False
    torch.testing.assert_close(a(x, key_padding_mask=mask), b(x, key_padding_mask=mask),
                               atol=1e-5, rtol=1e-5)


def test_residual_and_norm_flags():
    x, ctx, _ = _inputs()
    torch.manual_seed(0)
    attn = CrossAttention(16, 10, num_heads=2, residual=False, norm=False)
    out = attn(x, ctx)
    torch.manual_seed(0)
    attn_res = CrossAttention(16, 10, num_heads=2, residual=True, norm=False)
    torch.testing.assert_close(attn_res(x, ctx), x + out)
    assert isinstance(attn.norm, nn.Identity)


# -- convention: same numbers as torch's MultiheadAttention, opposite mask -------------


def test_matches_multihead_attention_with_inverted_mask():
    x, ctx, mask = _inputs()
    torch.manual_seed(0)
    ours = CrossAttention(16, 10, num_heads=4, residual=False, norm=False).eval()
    mha = nn.MultiheadAttention(16, 4, kdim=10, vdim=10, batch_first=True).eval()
    with torch.no_grad():
        mha.q_proj_weight.copy_(ours.to_q.weight)
        mha.k_proj_weight.copy_(ours.to_k.weight)
        mha.v_proj_weight.copy_(ours.to_v.weight)
        mha.in_proj_bias.zero_()
        mha.out_proj.weight.copy_(ours.to_out.weight)
        mha.out_proj.bias.copy_(ours.to_out.bias)
    ref, ref_w = mha(x, ctx, ctx, key_padding_mask=~mask, average_attn_weights=False)
    out, probs = ours(x, ctx, key_padding_mask=mask, return_attention=True)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probs, ref_w, atol=1e-5, rtol=1e-5)


# -- probabilities -------------------------------------------------------------------


def test_probabilities_rows_sum_to_one_and_masked_keys_get_zero():
    x, ctx, mask = _inputs()
    attn = CrossAttention(16, 10, num_heads=4)
    out, probs = attn(x, ctx, mask, return_attention=True)
    assert out.shape == x.shape
    assert probs.shape == (2, 4, 12, 7)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 12))
    assert (probs[0, :, :, 4:] == 0).all()
    assert (probs[0, :, :, :4] > 0).all()


def test_masked_context_tokens_do_not_affect_output():
    x, ctx, mask = _inputs()
    attn = CrossAttention(16, 10, num_heads=2).eval()
    ctx2 = ctx.clone()
    ctx2[0, 4:] = 100.0  # change only the padding of example 0
    torch.testing.assert_close(attn(x, ctx, mask), attn(x, ctx2, mask))
    assert not torch.allclose(attn(x, ctx), attn(x, ctx2))


# -- capture -----------------------------------------------------------------------


class _TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = SelfAttention(16, num_heads=2)
        self.cross = CrossAttention(16, 10, num_heads=4)

    def forward(self, x, ctx, mask=None):
        return self.cross(self.self_attn(x), ctx, mask)


def test_capture_attention_shapes_and_outputs_unchanged():
    x, ctx, mask = _inputs()
    torch.manual_seed(0)
    model = _TwoLayer().eval()
    plain = model(x, ctx, mask)
    with capture_attention(model) as maps:
        captured_out = model(x, ctx, mask)
    assert set(maps) == {"cross"}
    assert maps["cross"].shape == (2, 4, 12, 7)
    assert not maps["cross"].requires_grad
    torch.testing.assert_close(captured_out, plain, atol=1e-5, rtol=1e-5)
    _, probs = model.cross(model.self_attn(x), ctx, mask, return_attention=True)
    torch.testing.assert_close(maps["cross"], probs)
    # the fast path is restored afterwards
    assert all(m._attention_recorder is None for m in model.modules()
               if isinstance(m, CrossAttention))
    assert model.cross.attention_path == "sdpa"


def test_capture_attention_kinds_and_keep_all():
    x, ctx, _ = _inputs()
    model = _TwoLayer()
    with capture_attention(model, kind="all", keep_all=True) as maps:
        model(x, ctx)
        model(x, ctx)
    assert set(maps) == {"self_attn", "cross"}
    assert len(maps["cross"]) == 2 and maps["self_attn"][0].shape == (2, 2, 12, 12)
    with capture_attention(model, kind="self") as maps:
        model(x, ctx)
    assert set(maps) == {"self_attn"}


def test_capture_attention_restores_on_error_and_validates():
    model = _TwoLayer()
    with pytest.raises(RuntimeError):
        with capture_attention(model):
            raise RuntimeError("boom")
    assert model.cross._attention_recorder is None
    with pytest.raises(ValueError, match="kind"):
        with capture_attention(model, kind="both"):
            pass
    with pytest.raises(TypeError, match="model"):
        with capture_attention("not a model"):
            pass


def test_attention_flops():
    assert attention_flops(256, 77, 64) == 2 * 256 * 77 * 64


def test_cell_attention_shares_sum_per_cell_row_major():
    m = torch.zeros(4, 4)
    m[0, 3] = 3.0  # top right cell
    m[3, 0] = 1.0  # bottom left cell
    assert cell_attention_shares(m).tolist() == [0.0, 0.75, 0.25, 0.0]
    # a constant map gives 1/grid^2 per cell at any resolution, with any leading dims
    for side in (8, 16):
        shares = cell_attention_shares(torch.full((3, 2, side, side), 0.1))
        assert shares.shape == (3, 2, 4)
        torch.testing.assert_close(shares, torch.full((3, 2, 4), 0.25))
    assert cell_attention_shares(torch.rand(6, 6, generator=_gen()), grid=3).sum().item() == pytest.approx(1.0)


def test_cell_attention_shares_validates():
    with pytest.raises(ValueError, match="must divide"):
        cell_attention_shares(torch.ones(5, 4))
    with pytest.raises(ValueError, match="token_maps"):
        cell_attention_shares(torch.ones(4))
    with pytest.raises(TypeError, match="grid"):
        cell_attention_shares(torch.ones(4, 4), grid=2.0)


# -- validation --------------------------------------------------------------------


def test_constructor_errors():
    with pytest.raises(ValueError, match="num_heads=3 must divide query_dim=16"):
        CrossAttention(16, 10, num_heads=3)
    with pytest.raises(ValueError, match="attention_path"):
        CrossAttention(16, 10, attention_path="flash")
    with pytest.raises(ValueError, match="dropout"):
        CrossAttention(16, 10, num_heads=2, dropout=1.0)
    with pytest.raises(TypeError, match="query_dim"):
        CrossAttention("16", 10)
    attn = CrossAttention(16, 10, num_heads=2)
    with pytest.raises(ValueError, match="attention_path"):
        attn.attention_path = "fast"


def test_forward_errors():
    x, ctx, mask = _inputs()
    attn = CrossAttention(16, 10, num_heads=2)
    with pytest.raises(ValueError, match="x must have shape"):
        attn(torch.randn(2, 12, 15), ctx)
    with pytest.raises(ValueError, match="x must have shape"):
        attn(torch.randn(12, 16), ctx)
    with pytest.raises(ValueError, match="context must have shape"):
        attn(x, torch.randn(2, 7, 11))
    with pytest.raises(ValueError, match="batch size"):
        attn(x, ctx[:1])
    with pytest.raises(ValueError, match="context is required"):
        attn(x)
    with pytest.raises(TypeError, match="context must be a torch.Tensor"):
        attn(x, ctx.numpy())
    with pytest.raises(TypeError, match="key_padding_mask must be a bool"):
        attn(x, ctx, mask.long())
    with pytest.raises(ValueError, match="key_padding_mask must have shape"):
        attn(x, ctx, mask[:, :5])
    with pytest.raises(ValueError, match="keeps no key"):
        attn(x, ctx, torch.zeros(2, 7, dtype=torch.bool))
