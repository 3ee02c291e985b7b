"""Facts about Stable Diffusion's U-Net that the course states (notebooks 01 and 04), pinned on the
installed diffusers (issue 14, item 1).

SD 1.x/2.x/SDXL inject the timestep as a per-channel *bias* added before the ResBlock's second
GroupNorm (``time_embedding_norm="default"``), not by AdaGN's scale and shift (``"scale_shift"``,
ADM's); SDXL's pooled text and size conditions are added to the time embedding and reach the
ResBlocks through that same bias.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

resnet = pytest.importorskip("diffusers.models.resnet")
unet_2d_condition = pytest.importorskip("diffusers.models.unets.unet_2d_condition")
ResnetBlock2D = resnet.ResnetBlock2D
UNet2DConditionModel = unet_2d_condition.UNet2DConditionModel


def _default(cls, name):
    return inspect.signature(cls.__init__).parameters[name].default


def test_unet2dconditionmodel_default_is_the_bias():
    assert _default(UNet2DConditionModel, "resnet_time_scale_shift") == "default"


def test_resnetblock2d_default_is_the_bias():
    assert _default(ResnetBlock2D, "time_embedding_norm") == "default"


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 16, 8, 8, generator=g), torch.randn(2, 64, generator=g)


def test_default_block_adds_the_projected_time_embedding_as_a_bias():
    x, temb = _inputs()
    torch.manual_seed(0)
    block = ResnetBlock2D(in_channels=16, out_channels=32, temb_channels=64, groups=8).eval()
    assert block.time_emb_proj.out_features == 32  # one number per output channel
    with torch.no_grad():
        bias = block.time_emb_proj(F.silu(temb))[:, :, None, None]  # (B, C, 1, 1)
        h = block.conv1(F.silu(block.norm1(x)))
        by_hand = block.conv_shortcut(x) + block.conv2(F.silu(block.norm2(h + bias)))
        out = block(x, temb)
    assert (by_hand - out).abs().max().item() <= 1e-6


def test_default_block_input_to_norm2_differs_from_conv1_by_a_per_channel_constant():
    x, temb = _inputs()
    torch.manual_seed(0)
    block = ResnetBlock2D(in_channels=16, out_channels=32, temb_channels=64, groups=8).eval()
    seen = {}
    hooks = [block.conv1.register_forward_hook(lambda m, a, out: seen.__setitem__("conv1", out)),
             block.norm2.register_forward_pre_hook(lambda m, a: seen.__setitem__("norm2", a[0]))]
    with torch.no_grad():
        block(x, temb)
        expected = block.time_emb_proj(F.silu(temb))
    for hook in hooks:
        hook.remove()
    added = seen["norm2"] - seen["conv1"]
    assert (added - added[:, :, :1, :1]).abs().max().item() <= 1e-6  # the same at every pixel
    assert (added[:, :, 0, 0] - expected).abs().max().item() <= 1e-6


def test_scale_shift_block_is_adagn():
    x, temb = _inputs()
    torch.manual_seed(0)
    block = ResnetBlock2D(in_channels=16, out_channels=32, temb_channels=64, groups=8,
                          time_embedding_norm="scale_shift").eval()
    assert block.time_emb_proj.out_features == 64  # a scale and a shift per channel
    with torch.no_grad():
        scale, shift = block.time_emb_proj(F.silu(temb))[:, :, None, None].chunk(2, dim=1)
        h = block.conv1(F.silu(block.norm1(x)))
        by_hand = block.conv_shortcut(x) + block.conv2(F.silu(block.norm2(h) * (1 + scale) + shift))
        out = block(x, temb)
    assert (by_hand - out).abs().max().item() <= 1e-6


def test_sdxl_added_conditions_join_the_time_embedding():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8, attention_head_dim=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, addition_embed_type="text_time", addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=12 + 6 * 4).eval()
    resnets = [m for m in unet.modules() if isinstance(m, ResnetBlock2D)]
    assert resnets and {m.time_embedding_norm for m in resnets} == {"default"}
    rec = {}
    hooks = [unet.time_embedding.register_forward_hook(lambda m, a, out: rec.__setitem__("time", out)),
             unet.add_embedding.register_forward_hook(lambda m, a, out: rec.__setitem__("added", out)),
             resnets[0].register_forward_pre_hook(lambda m, a: rec.__setitem__("temb", a[1]))]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        unet(torch.randn(2, 4, 8, 8, generator=g), torch.tensor([500, 20]), torch.randn(2, 5, 16, generator=g),
             added_cond_kwargs={"text_embeds": torch.randn(2, 12, generator=g),
                                "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)})
    for hook in hooks:
        hook.remove()
    assert rec["added"].abs().max().item() > 0.01
    assert (rec["temb"] - (rec["time"] + rec["added"])).abs().max().item() <= 1e-6
