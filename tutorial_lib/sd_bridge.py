"""From the course to Stable Diffusion: the course's sampler driving diffusers' components.

A ``diffusers.UNet2DConditionModel`` becomes a course denoiser with :class:`DiffusersUNetDenoiser`
(``(x_t, t, context) -> ε``); with the SD 1.x schedule (:func:`sd_noise_schedule`: ``scaled_linear``
betas 0.00085 → 0.012, ᾱ' = ᾱ_0 after the last step) and :data:`SD_SAMPLER_CONFIG` (leading
spacing, ``steps_offset=1``) the course's ``encode_prompt`` → ``ConditionalDDIMSampler`` reproduces
``StableDiffusionPipeline``'s latents (``tests/test_sd_pipeline_parity.py``).
:func:`tiny_sd_components` builds small, randomly initialised components with the real
architecture classes, for CPUs and tests (labelled random: their images mean nothing).
:func:`load_sd_components` loads real SD 1.x weights from disk only (a folder, or a hub id already
in the Hugging Face cache) and fails at once, naming that fallback, when there are none;
:func:`sd_components` returns whichever of the two is available.

diffusers is imported inside the functions: the rest of the package does not need it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from . import _checks
from .sampler import SamplerConfig
from .schedule import NoiseSchedule

__all__ = ["DiffusersUNetDenoiser", "sd_noise_schedule", "SD_SAMPLER_CONFIG", "tiny_sd_components",
           "SDWeightsNotAvailableError", "SD_MODEL_ENV", "SD_DEFAULT_MODELS", "load_sd_components", "sd_components",
           "sd_pipeline"]

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
    ``UNet2DConditionModel`` on ``sample_size``² latents, a 4-level ``AutoencoderKL`` that, like SD's,
    decodes a ``(4, h, w)`` latent to an ``(3, 8h, 8w)`` image, SD 1.x's ``DDIMScheduler`` config).
    Random weights: for equality checks and timing, not for images."""
    import diffusers

    from .text import load_clip_tokenizer, load_text_encoder

    torch.manual_seed(seed)
    encoder = load_text_encoder("tiny-clip", seed=seed)
    unet = diffusers.UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=encoder.config.hidden_size, attention_head_dim=8, norm_num_groups=8).eval()
    # Four levels, as SD's VAE: three 2× downsamplings, so a latent pixel stands for 8 × 8 image pixels.
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16,) * 4,
                                  norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 4,
                                  up_block_types=("UpDecoderBlock2D",) * 4).eval()
    scheduler = diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return {"tokenizer": load_clip_tokenizer(), "text_encoder": encoder, "unet": unet, "vae": vae,
            "scheduler": scheduler}


# --------------------------------------------------------------------------- real weights, offline


#: The environment variable naming the SD 1.x weights to use: a folder or a cached hub id.
SD_MODEL_ENV = "COURSE_SD_MODEL"
#: Hub ids looked up in the local cache when neither an argument nor ``COURSE_SD_MODEL`` names one
#: (the original id and the mirror it moved to in 2024).
SD_DEFAULT_MODELS = ("runwayml/stable-diffusion-v1-5", "stable-diffusion-v1-5/stable-diffusion-v1-5")

_SD_FALLBACK_HINT = (
    "Nothing is downloaded. Offline fallback: tutorial_lib.sd_bridge.tiny_sd_components(), small RANDOMLY "
    "INITIALISED components with the real classes (for equality checks and timing; their images mean nothing). "
    "For real weights, pass the path of a diffusers-format SD 1.x folder (model_index.json, tokenizer/, "
    f"text_encoder/, unet/, vae/, scheduler/) or set {SD_MODEL_ENV} to it (or to a hub id already in the "
    "Hugging Face cache, HF_HOME / HF_HUB_CACHE)."
)


class SDWeightsNotAvailableError(FileNotFoundError):
    """Real Stable Diffusion weights are not on this machine (and none are downloaded)."""


def _local_sd_folder(name: str) -> Path | None:
    """The folder holding ``name``'s ``model_index.json``: ``name`` itself, or its snapshot in the
    local Hugging Face cache; None when neither exists. Reads the disk only (no network)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path if (path / "model_index.json").is_file() else None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "model_index.json")
    except ValueError:  # not a hub id either (e.g. the path of a missing folder)
        return None
    return Path(found).parent if isinstance(found, str) else None


def _load_sd_folder(folder: Path, dtype: torch.dtype | None) -> dict:
    """The five components from a local diffusers-format SD folder, ``local_files_only`` throughout."""
    import diffusers
    from transformers import CLIPTokenizer

    from .text_loading import load_text_encoder

    root, typed = str(folder), {} if dtype is None else {"torch_dtype": dtype}
    unet = diffusers.UNet2DConditionModel.from_pretrained(root, subfolder="unet", local_files_only=True, **typed)
    vae = diffusers.AutoencoderKL.from_pretrained(root, subfolder="vae", local_files_only=True, **typed)
    # The course's sampler is DDIM: SD's own scheduler config (PNDM's) read into a DDIMScheduler.
    scheduler = diffusers.DDIMScheduler.from_pretrained(root, subfolder="scheduler", local_files_only=True)
    return {"tokenizer": CLIPTokenizer.from_pretrained(root, subfolder="tokenizer", local_files_only=True),
            # the course's local-first loader (never downloads with allow_download=False)
            "text_encoder": load_text_encoder(root, model_class="clip", subfolder="text_encoder",
                                              **({} if dtype is None else {"dtype": dtype})),
            "unet": unet.eval(), "vae": vae.eval(), "scheduler": scheduler}


def load_sd_components(pretrained_model_name_or_path: str | os.PathLike | None = None, *,
                       dtype: torch.dtype | None = None) -> dict:
    """Real SD 1.x components from disk: ``{"tokenizer", "text_encoder", "unet", "vae", "scheduler"}``
    (the keys of :func:`tiny_sd_components`), never downloading.

    Args:
        pretrained_model_name_or_path: a diffusers-format folder or a hub id already in the local
            Hugging Face cache; default: the ``COURSE_SD_MODEL`` environment variable, else
            :data:`SD_DEFAULT_MODELS`.
        dtype: e.g. ``torch.float16`` for the text encoder, U-Net and VAE (default: as saved).

    Raises:
        SDWeightsNotAvailableError: (a ``FileNotFoundError``) at once when the weights are not on
            disk or do not load; the message names ``tiny_sd_components()`` and how to point to
            local weights.
    """
    name = pretrained_model_name_or_path
    if name is None:
        names = (os.environ[SD_MODEL_ENV],) if os.environ.get(SD_MODEL_ENV) else SD_DEFAULT_MODELS
    else:
        name = os.fspath(name) if isinstance(name, os.PathLike) else name
        _checks.that(isinstance(name, str) and name, "pretrained_model_name_or_path must be a non-empty str or "
                     f"path, got {pretrained_model_name_or_path!r}", TypeError)
        names = (name,)
    _checks.instance("dtype", dtype, (torch.dtype, type(None)), "a torch.dtype or None")
    folder = next((f for f in map(_local_sd_folder, names) if f is not None), None)
    if folder is None:
        raise SDWeightsNotAvailableError(f"no Stable Diffusion weights on disk for {' or '.join(map(repr, names))} "
                                         f"(no such folder with a model_index.json, nor in the Hugging Face "
                                         f"cache). {_SD_FALLBACK_HINT}")
    try:
        return _load_sd_folder(folder, dtype)
    except (OSError, ValueError) as err:  # an incomplete folder or cache entry
        raise SDWeightsNotAvailableError(f"could not load the SD components from {str(folder)!r}: {err}. "
                                         f"{_SD_FALLBACK_HINT}") from err


def sd_components(prefer_real: bool = True, seed: int = 0, sample_size: int = 8) -> tuple[dict, bool]:
    """``(components, is_real)``: :func:`load_sd_components`'s real weights when they are on disk
    (and ``prefer_real``), else :func:`tiny_sd_components` ``(seed, sample_size)`` and ``False``.
    Call ``load_sd_components()`` itself to see why the real ones did not load."""
    if prefer_real:
        try:
            return load_sd_components(), True
        except SDWeightsNotAvailableError:
            pass
    return tiny_sd_components(seed=seed, sample_size=sample_size), False


def sd_pipeline(components: dict):
    """``diffusers.StableDiffusionPipeline`` on ``components`` (the dict of :func:`sd_components`),
    without safety checker or progress bar. transformers' notice that its image processors would
    prefer torchvision (which the course keeps out; the pipeline never uses them) is silenced."""
    import diffusers
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        pipe = diffusers.StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None,
                                                 requires_safety_checker=False)
    finally:
        logging.set_verbosity(verbosity)
    pipe.set_progress_bar_config(disable=True)
    return pipe
