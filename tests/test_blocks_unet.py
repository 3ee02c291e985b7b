"""Tests for tutorial_lib.blocks and tutorial_lib.unet (notebook 04)."""

import json

import pytest
import torch
import torch.nn as nn

from tutorial_lib.attention import CrossAttention, capture_attention
from tutorial_lib.blocks import ConditionedResBlock, FeedForward, ResBlock
from tutorial_lib.conditioning import AdaptiveGroupNorm
from tutorial_lib.unet import ConditionalUNet, UNetConfig, parameter_breakdown

TINY = dict(base_channels=8, channel_mults=(1, 2), attention_levels=(False, True),
            context_dim=12, num_heads=2, time_embed_dim=16, norm_groups=4, sample_size=8)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _tiny_unet(seed=0, perturb=True, **overrides):
    """A small U-Net; `perturb` gives conv_out non-zero weights (it is zero at init)."""
    torch.manual_seed(seed)
    model = ConditionalUNet(UNetConfig(**{**TINY, **overrides}))
    if perturb:
        with torch.no_grad():
            model.conv_out.weight.normal_(0, 0.1, generator=_gen(seed + 100))
    return model


def _batch(b=2, h=8, w=8, n=5, d=12, seed=1):
    g = _gen(seed)
    return (torch.randn(b, 3, h, w, generator=g), torch.randint(0, 1000, (b,), generator=g),
            torch.randn(b, n, d, generator=g))


# -- blocks ---------------------------------------------------------------------------


def test_resblock_shapes_and_time_changes_output_once_trained():
    torch.manual_seed(0)
    blk = ResBlock(8, 16, time_dim=6, num_groups=4)
    x = torch.randn(2, 8, 5, 7, generator=_gen())
    out = blk(x, torch.randn(2, 6, generator=_gen(1)))
    assert out.shape == (2, 16, 5, 7)
    # AdaGN starts as identity: time has no effect until its projection is trained
    torch.testing.assert_close(out, blk(x, torch.randn(2, 6, generator=_gen(2))))
    with torch.no_grad():
        blk.norm2.proj.weight.normal_(generator=_gen(3))
    assert not torch.allclose(blk(x, torch.ones(2, 6)), blk(x, -torch.ones(2, 6)))


@pytest.mark.parametrize("in_channels,out_channels", [(8, 16), (16, 8), (8, 8)])
def test_conditioned_resblock_in_ne_out_channels(in_channels, out_channels):
    """The seed reshaped with the input channel count; in != out must work here."""
    torch.manual_seed(0)
    blk = ConditionedResBlock(in_channels, out_channels, time_dim=6, context_dim=12, num_heads=2,
                              num_groups=4).eval()
    x = torch.randn(2, in_channels, 3, 5, generator=_gen())  # H != W catches transposes
    temb, ctx = torch.randn(2, 6, generator=_gen(1)), torch.randn(2, 4, 12, generator=_gen(2))
    out = blk(x, temb, ctx)
    assert out.shape == (2, out_channels, 3, 5)
    # the same computation written out token by token
    h = blk.resblock(x, temb)
    tokens = h.permute(0, 2, 3, 1).reshape(2, 15, out_channels)  # (B, H*W, C), row-major
    tokens = blk.ff(blk.cross_attn(blk.self_attn(tokens), ctx))
    expected = tokens.reshape(2, 3, 5, out_channels).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_conditioned_resblock_without_attention_is_a_resblock():
    torch.manual_seed(0)
    blk = ConditionedResBlock(8, 8, 6, 12, num_heads=2, num_groups=4, use_attention=False)
    assert not any(isinstance(m, (CrossAttention, FeedForward)) for m in blk.modules())
    x, temb = torch.randn(1, 8, 4, 4), torch.randn(1, 6)
    out1 = blk(x, temb, torch.randn(1, 3, 12))
    torch.testing.assert_close(out1, blk(x, temb, torch.randn(1, 3, 12)))
    torch.testing.assert_close(out1, blk.resblock(x, temb))


def test_block_errors():
    blk = ConditionedResBlock(8, 16, 6, 12, num_heads=2, num_groups=4)
    x, temb, ctx = torch.randn(2, 8, 4, 4), torch.randn(2, 6), torch.randn(2, 3, 12)
    with pytest.raises(ValueError, match="x must have shape"):
        blk(torch.randn(2, 16, 4, 4), temb, ctx)
    with pytest.raises(ValueError, match="time_emb must have shape"):
        blk(x, torch.randn(2, 5), ctx)
    with pytest.raises(ValueError, match="context must have shape"):
        blk(x, temb, torch.randn(2, 3, 11))
    with pytest.raises(ValueError, match="batch size"):
        blk(x, temb, torch.randn(1, 3, 12))
    with pytest.raises(TypeError, match="context must be a torch.Tensor"):
        blk(x, temb, None)
    with pytest.raises(ValueError, match="num_groups=3 must divide in_channels=8"):
        ResBlock(8, 8, 6, num_groups=3)


# -- the U-Net ---------------------------------------------------------------------------


def test_default_config_size():
    model = ConditionalUNet()
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= n <= 3_000_000
    assert model.context_dim == 128 and model.prediction_type == "epsilon"
    assert model.sample_size == 32 and model.config == UNetConfig()
    breakdown = parameter_breakdown(model)
    assert sum(breakdown.values()) == n
    assert "other" not in breakdown
    assert all(breakdown[k] > 0 for k in ("time embedding", "conv in/out", "resblocks",
                                          "self-attention", "cross-attention", "feed-forward"))


def test_output_is_zero_at_init():
    model = _tiny_unet(perturb=False)
    x, t, ctx = _batch()
    assert (model(x, t, ctx) == 0).all()


@pytest.mark.parametrize("h,w", [(8, 8), (4, 10)])
def test_unet_shapes(h, w):
    model = _tiny_unet(out_channels=1)
    x, t, ctx = _batch(h=h, w=w)
    assert model(x, t, ctx).shape == (2, 1, h, w)


def test_unet_num_res_blocks_and_three_levels():
    model = _tiny_unet(num_res_blocks=2, channel_mults=(1, 2, 2),
                       attention_levels=(False, False, True))
    x, t, ctx = _batch()
    assert model(x, t, ctx).shape == x.shape


def _params_without_gradient(model):
    x, t, ctx = _batch()
    model.zero_grad()
    model(x, t, ctx).pow(2).mean().backward()
    return [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]


def _perturb_adagn(model, seed=5):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, AdaptiveGroupNorm):
                m.proj.weight.normal_(0, 0.1, generator=_gen(seed))


def test_gradient_reaches_every_parameter():
    model = _tiny_unet()
    # At init the AdaGN projections are zero, so the time-embedding MLP gets no
    # gradient yet (the projections do, and pass it on after the first step).
    assert {n.split(".")[0] for n in _params_without_gradient(model)} == {"time_embed"}
    _perturb_adagn(model)
    assert _params_without_gradient(model) == []


def test_prompt_and_timestep_change_the_output():
    model = _tiny_unet().eval()
    x, t, ctx = _batch()
    out = model(x, t, ctx)
    assert not torch.allclose(out, model(x, t, torch.randn(2, 5, 12, generator=_gen(9))))
    # time enters through AdaGN, whose projections start at zero: perturb them too
    assert torch.allclose(out, model(x, t + 100, ctx))
    _perturb_adagn(model)
    assert not torch.allclose(model(x, t, ctx), model(x, t + 100, ctx))


def test_key_padding_mask_hides_padding_tokens():
    model = _tiny_unet().eval()
    x, t, ctx = _batch()
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[:, 3:] = False
    ctx2 = ctx.clone()
    ctx2[:, 3:] = 7.0
    torch.testing.assert_close(model(x, t, ctx, mask), model(x, t, ctx2, mask))


def test_determinism_and_scalar_t_broadcast():
    a, b = _tiny_unet(seed=3), _tiny_unet(seed=3)
    x, _, ctx = _batch()
    out = a(x, torch.tensor([10, 10]), ctx)
    torch.testing.assert_close(out, b(x, torch.tensor([10, 10]), ctx), atol=0, rtol=0)
    torch.testing.assert_close(out, a(x, 10, ctx))
    torch.testing.assert_close(out, a(x, torch.tensor(10), ctx))
    torch.testing.assert_close(out, a(x, torch.tensor([10.0, 10.0]), ctx))


def test_capture_on_unet_gives_maps_and_same_output():
    model = _tiny_unet().eval()
    x, t, ctx = _batch()
    plain = model(x, t, ctx)
    with capture_attention(model) as maps:
        out = model(x, t, ctx)
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-5)
    # level 1 (4x4 = 16 tokens) down and up, and the middle block
    assert set(maps) == {"down_blocks.1.0.cross_attn", "mid.cross_attn",
                         "up_blocks.0.0.cross_attn"}
    assert maps["mid.cross_attn"].shape == (2, 2, 16, 5)


def test_v_prediction_config():
    model = _tiny_unet(prediction_type="v_prediction")
    assert model.prediction_type == "v_prediction"


# -- config ------------------------------------------------------------------------------


def test_config_round_trip():
    cfg = UNetConfig(**TINY, prediction_type="v_prediction", dropout=0.1)
    d = cfg.to_dict()
    assert d["channel_mults"] == [1, 2] and json.loads(json.dumps(d)) == d
    assert UNetConfig.from_dict(d) == cfg
    assert UNetConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="unknown UNetConfig keys"):
        UNetConfig.from_dict({**d, "cross_attention_dim": 4})
    with pytest.raises(TypeError, match="mapping"):
        UNetConfig.from_dict([1, 2])


@pytest.mark.parametrize("bad,match", [
    (dict(prediction_type="sample"), "prediction_type"),
    (dict(attention_levels=(True,)), "attention_levels"),
    (dict(channel_mults=()), "channel_mults"),
    (dict(channel_mults=(1, 0, 2)), "channel_mults"),
    (dict(base_channels=12), "norm_groups=8 must divide"),
    (dict(num_heads=3), "num_heads=3 must divide"),
    (dict(sample_size=30), "sample_size=30"),
    (dict(context_dim=0), "context_dim"),
    (dict(dropout=1.5), "dropout"),
])
def test_config_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**bad)


def test_unet_constructor_rejects_non_config():
    with pytest.raises(TypeError, match="config must be a UNetConfig"):
        ConditionalUNet({"in_channels": 3})


# -- bad inputs to forward ------------------------------------------------------------------


def test_forward_errors():
    model = _tiny_unet()
    x, t, ctx = _batch()
    cases = [
        ((torch.randn(2, 4, 8, 8), t, ctx), ValueError, "x_t must have shape"),
        ((torch.randn(3, 8, 8), t, ctx), ValueError, "x_t must have shape"),
        ((torch.randn(2, 3, 8, 7), t, ctx), ValueError, "divisible by 2"),
        ((x.long(), t, ctx), TypeError, "x_t must be a floating-point"),
        (("x", t, ctx), TypeError, "x_t must be a torch.Tensor"),
        ((x, torch.zeros(3, dtype=torch.long), ctx), ValueError, "t must have shape"),
        ((x, torch.zeros(2, 1), ctx), ValueError, "t must have shape"),
        ((x, torch.zeros(2, dtype=torch.bool), ctx), TypeError, "t must be an integer or float"),
        ((x, "10", ctx), TypeError, "t must be a tensor or a number"),
        ((x, t, torch.randn(2, 5, 13)), ValueError, "context must have shape"),
        ((x, t, torch.randn(2, 12)), ValueError, "context must have shape"),
        ((x, t, torch.randn(1, 5, 12)), ValueError, "batch size"),
        ((x, t, None), TypeError, "context must be a torch.Tensor"),
    ]
    for args, exc, match in cases:
        with pytest.raises(exc, match=match):
            model(*args)
    with pytest.raises(ValueError, match="key_padding_mask must have shape"):
        model(x, t, ctx, torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="key_padding_mask must be a bool"):
        model(x, t, ctx, torch.ones(2, 5))


def test_parameter_breakdown_errors_and_generic_module():
    with pytest.raises(TypeError, match="model"):
        parameter_breakdown("unet")
    counts = parameter_breakdown(nn.Linear(3, 2))
    assert counts["other"] == 8
