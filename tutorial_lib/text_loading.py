"""Loading text encoders: a real checkpoint when available, a labelled tiny random one offline.

Introduced in notebook 02. ``load_text_encoder`` never hangs a notebook on network retries:
it reads the local cache first, downloads only when asked to (``allow_download=True``),
and only after the environment and a quick TCP check of the model hub say it can;
otherwise it raises :class:`EncoderNotAvailableError` at once, naming the offline
fallback (``"tiny-clip"``: the real architecture with untrained weights). ``describe``
says in one line which of the two a model is, so random weights are never mistaken for a
trained encoder.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from . import _checks
from .encoder_configs import (
    _transformers,
    count_parameters,
    tiny_clip_text_config,
    tiny_t5_encoder_config,
)

__all__ = ["EncoderNotAvailableError", "load_text_encoder", "describe"]


class EncoderNotAvailableError(OSError):
    """A real encoder could not be loaded offline (and no download was allowed or possible)."""


_TINY = {  # name: (transformers class name, config fn)
    "tiny-clip": ("CLIPTextModel", tiny_clip_text_config),
    "tiny-clip-projection": ("CLIPTextModelWithProjection", tiny_clip_text_config),
    "tiny-t5": ("T5EncoderModel", tiny_t5_encoder_config),
}

_CLASS_NAMES = {  # model_class shorthand: transformers class name
    "clip": "CLIPTextModel",
    "clip-projection": "CLIPTextModelWithProjection",
    "t5": "T5EncoderModel",
}

_FALLBACK_HINT = (
    "Offline fallback: load_text_encoder('tiny-clip') (or 'tiny-clip-projection', "
    "'tiny-t5'), a small RANDOMLY INITIALISED transformers model with the real "
    "architecture and token semantics but untrained weights."
)


# --------------------------------------------------------------------------------------
# Can the hub be asked? (the environment, then a quick TCP check)
# --------------------------------------------------------------------------------------


def _hub_reachable(timeout: float) -> bool:
    """A quick TCP check of the model hub's endpoint (``HF_ENDPOINT``) with a short timeout."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_env() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _no_download_reason(name: str, subfolder: str | None, allow_download: bool, timeout: float,
                        local_error: Exception) -> str | None:
    """Why a checkpoint that is not on disk is not downloaded (``None``: try the download)."""
    local = Path(name).expanduser()
    if local.is_dir():
        where = f" (subfolder {subfolder!r})" if subfolder else ""
        return f"could not load a text encoder from the folder {str(local)!r}{where}: {local_error}."
    if not allow_download:
        return (f"{name!r} is not in the local cache and allow_download=False. "
                "Pass allow_download=True to download it (needs the model hub).")
    if _offline_env():
        return f"{name!r} is not cached and HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set."
    if not _hub_reachable(timeout):
        return f"{name!r} is not cached and the model hub did not answer within {timeout} s."
    return None


# --------------------------------------------------------------------------------------
# Which class, and the two ways to get a model
# --------------------------------------------------------------------------------------


def _resolve_class(model_class) -> type[nn.Module] | None:
    if model_class is None or (isinstance(model_class, type) and issubclass(model_class, nn.Module)):
        return model_class
    if isinstance(model_class, str) and model_class in _CLASS_NAMES:
        return _transformers(_CLASS_NAMES[model_class])
    raise ValueError(f"model_class must be None, one of {sorted(_CLASS_NAMES)} or a model class, got {model_class!r}")


def _infer_class(config) -> type[nn.Module]:
    """The encoder class of a checkpoint's config (``model_type``, then ``architectures``)."""
    model_type = getattr(config, "model_type", "")
    if model_type in {"t5", "mt5", "umt5"}:
        return _transformers("T5EncoderModel")
    if model_type in {"clip_text_model", "clip"}:
        archs = getattr(config, "architectures", None) or []
        projection = any("WithProjection" in a for a in archs)
        return _transformers("CLIPTextModelWithProjection" if projection else "CLIPTextModel")
    raise ValueError(f"cannot tell which text encoder class loads model_type {model_type!r}; pass model_class='clip', 'clip-projection' or 't5'")


def _label(model: nn.Module, *, pretrained: bool, source: str) -> nn.Module:
    model.is_pretrained = pretrained
    model.source = source
    return model.eval()


def _build_tiny(name: str, cls: type[nn.Module] | None, seed: int, overrides: dict) -> nn.Module:
    """A tiny randomly initialised encoder, seeded without touching the global RNG."""
    class_name, config_fn = _TINY[name]
    tiny_cls = _transformers(class_name)
    _checks.that(cls in (None, tiny_cls), f"{name!r} builds a {tiny_cls.__name__}, not {getattr(cls, '__name__', cls)}")
    config = config_fn(**overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = tiny_cls(config)
    return _label(model, pretrained=False, source=f"{name} (random init, seed {seed})")


def _from_pretrained(name: str, cls, subfolder: str | None, kwargs: dict, local_only: bool) -> nn.Module:
    """``from_pretrained`` of the checkpoint (class from its config unless given), labelled."""
    sub = {"subfolder": subfolder} if subfolder else {}
    cache = {k: v for k, v in kwargs.items() if k == "cache_dir"}
    config = _transformers("AutoConfig").from_pretrained(name, local_files_only=local_only, **sub, **cache)
    model = (cls or _infer_class(config)).from_pretrained(name, local_files_only=local_only, **sub, **kwargs)
    return _label(model, pretrained=True, source=name)


def load_text_encoder(
    name_or_path: str | os.PathLike,
    *,
    model_class=None,
    subfolder: str | None = None,
    allow_download: bool = False,
    timeout: float = 2.0,
    seed: int = 0,
    **kwargs,
) -> nn.Module:
    """Load a text encoder: a real checkpoint when available, else a labelled tiny random one.

    Introduced in notebook 02.

    * ``"tiny-clip"``, ``"tiny-clip-projection"``, ``"tiny-t5"``: build a small randomly
      initialised ``CLIPTextModel`` / ``CLIPTextModelWithProjection`` / ``T5EncoderModel``
      from ``tiny_clip_text_config(**kwargs)`` / ``tiny_t5_encoder_config(**kwargs)``,
      seeded with ``seed``. Labelled ``is_pretrained = False``.
    * a local folder: ``from_pretrained(folder, local_files_only=True)``.
    * a hub id (``"openai/clip-vit-large-patch14"``): first
      ``from_pretrained(id, local_files_only=True)`` (the local cache); only with
      ``allow_download=True``, and only if a TCP check of the hub answers within
      ``timeout`` seconds, the real download. Otherwise an ``EncoderNotAvailableError``
      is raised at once, naming the offline fallback (a notebook never hangs for minutes
      on retries).

    Args:
        name_or_path: a tiny name, a folder or a hub id.
        model_class: ``None`` (inferred from the config), ``"clip"``, ``"clip-projection"``,
            ``"t5"`` or a ``transformers`` model class. For SD checkpoints use
            ``subfolder="text_encoder"`` (or ``"text_encoder_2"``).
        subfolder: sub-folder of the checkpoint holding the encoder.
        allow_download: permit network access (default ``False``).
        timeout: seconds for the reachability check.
        seed: seed of the random initialisation of tiny models.
        **kwargs: tiny models: config overrides (e.g. ``hidden_size=48``); real models:
            passed to ``from_pretrained`` (e.g. ``cache_dir``, ``torch_dtype``).

    Returns:
        The model in eval mode, with attributes ``is_pretrained`` (``bool``: ``True`` when
        the weights came from a checkpoint) and ``source`` (``str``). See ``describe``.
    """
    name = os.fspath(name_or_path) if isinstance(name_or_path, os.PathLike) else name_or_path
    _checks.that(isinstance(name, str) and name, f"name_or_path must be a non-empty str or path, got {name!r}", TypeError)
    cls = _resolve_class(model_class)
    if name in _TINY:
        return _build_tiny(name, cls, seed, kwargs)
    try:
        return _from_pretrained(name, cls, subfolder, kwargs, local_only=True)
    except (OSError, ValueError) as err:
        local_error = err
    reason = _no_download_reason(name, subfolder, allow_download, timeout, local_error)
    if reason is not None:
        raise EncoderNotAvailableError(f"{reason} {_FALLBACK_HINT}") from local_error
    try:
        return _from_pretrained(name, cls, subfolder, kwargs, local_only=False)
    except (OSError, ValueError) as err:
        raise EncoderNotAvailableError(f"downloading {name!r} failed: {err}. {_FALLBACK_HINT}") from err


def describe(model: nn.Module) -> str:
    """One line saying what a text encoder is, and whether its weights are trained.

    Introduced in notebook 02. Every notebook cell that shows a tiny encoder's output
    prints this, so random weights are never mistaken for a trained model.
    """
    n = count_parameters(model)  # TypeError unless model is an nn.Module
    config = getattr(model, "config", None)
    width = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None)
    size = f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"
    pretrained = getattr(model, "is_pretrained", None)
    if pretrained is False:
        status = "RANDOMLY INITIALISED, untrained: real shapes and semantics, meaningless values"
    elif pretrained is True:
        status = f"weights loaded from {getattr(model, 'source', 'a checkpoint')}"
    else:
        status = "origin unknown (not loaded through load_text_encoder)"
    return f"{type(model).__name__}: {size} parameters, width {width}, {layers} layers; {status}"
