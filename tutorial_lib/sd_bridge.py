"""From the course to Stable Diffusion: the course's sampler driving diffusers' components.

A ``diffusers.UNet2DConditionModel`` becomes a course denoiser with :class:`DiffusersUNetDenoiser`
(``(x_t, t, context) -> ε``); with the SD 1.x schedule (:func:`sd_noise_schedule`: ``scaled_linear``
betas 0.00085 → 0.012, ᾱ' = ᾱ_0 after the last step) and :data:`SD_SAMPLER_CONFIG` (leading
spacing, ``steps_offset=1``) the course's ``encode_prompt`` → ``ConditionalDDIMSampler`` reproduces
``StableDiffusionPipeline``'s latents (``tests/test_sd_pipeline_parity.py``).
:func:`tiny_sd_components` builds small, randomly initialised components with the real
architecture classes, for CPUs and tests (labelled random: their images mean nothing).

diffusers is imported inside the functions: the rest of the package does not need it.
"""

from __future__ import annotations

import torch
from torch import nn

from .sampler import SamplerConfig
from .schedule import NoiseSchedule

__all__ = ["DiffusersUNetDenoiser", "sd_noise_schedule", "SD_SAMPLER_CONFIG", "tiny_sd_components"]

#: How SD 1.x pipelines walk the schedule (their scheduler configs: leading spacing, steps_offset 1).
SD_SAMPLER_CONFIG = SamplerConfig(timestep_spacing="leading", steps_offset=1)


class DiffusersUNetDenoiser(nn.Module):
    """diffusers' ``UNet2DConditionModel`` in the course's denoiser protocol.

    ``forward(x_t (B, 4, h, w), t (B,), context (B, 77, D)) -> ε (B, 4, h, w)``; reads
    ``prediction_type`` from the U-Net's scheduler-independent default ("epsilon") and
    ``context_dim`` from its ``cross_attention_dim``.
    """

    prediction_type = "epsilon"

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet, self.context_dim = unet, unet.config.cross_attention_dim

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.unet(x_t, t, encoder_hidden_states=context).sample


def sd_noise_schedule() -> NoiseSchedule:
    """SD 1.x's schedule: 1000 ``scaled_linear`` steps, β from 0.00085 to 0.012, ``set_alpha_to_one=False``."""
    return NoiseSchedule(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, set_alpha_to_one=False)


def tiny_sd_components(seed: int = 0, sample_size: int = 8) -> dict:
    """Small random SD components with the real classes: ``{"tokenizer", "text_encoder", "unet",
    "vae", "scheduler"}`` (the shipped CLIP tokenizer, a tiny ``CLIPTextModel``, a 2-level
    ``UNet2DConditionModel`` on ``sample_size``² latents, a 1-level ``AutoencoderKL``, SD 1.x's
    ``DDIMScheduler`` config). Random weights: for equality checks and timing, not for images."""
    import diffusers

    from .text import load_clip_tokenizer, load_text_encoder

    torch.manual_seed(seed)
    encoder = load_text_encoder("tiny-clip", seed=seed)
    unet = diffusers.UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=encoder.config.hidden_size, attention_head_dim=8, norm_num_groups=8).eval()
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32,),
                                  norm_num_groups=8, down_block_types=("DownEncoderBlock2D",),
                                  up_block_types=("UpDecoderBlock2D",)).eval()
    scheduler = diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return {"tokenizer": load_clip_tokenizer(), "text_encoder": encoder, "unet": unet, "vae": vae,
            "scheduler": scheduler}
