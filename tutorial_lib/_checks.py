"""The argument checks shared by the package's entry points.

Public constructors and functions call these once, where input enters, so that a
learner's mistake is reported with the argument's name and what was expected;
inner layers trust what they are given and do not re-check on every call.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = ["real", "integer", "boolean", "one_of", "tensor", "instance", "function", "sizes", "like", "generator"]


def real(name: str, value, low: float | None = None, high: float | None = None, open_low: bool = False) -> float:
    """A finite real number in ``[low, high]`` (``(low, high]`` if ``open_low``; a 0-d tensor is
    accepted), as a float."""
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.dtype.is_complex:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (open_low and value == low)):
        interval = f"({low}, {high}]" if open_low else f">= {low}"
        raise ValueError(f"{name} must be {'in ' if open_low else ''}{interval}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def integer(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """A Python int (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if None not in (low, high) else (f">= {low}" if high is None else f"<= {high}")
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


def boolean(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def one_of(name: str, value, options) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")


def tensor(name: str, value, ndim: int | None = None, floating: bool = False) -> torch.Tensor:
    """A ``torch.Tensor`` (of ``ndim`` dims; floating point and finite if ``floating``)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {tuple(value.shape)}")
    if floating:
        if not value.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {value.dtype}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} contains NaN or inf")
    return value


def instance(name: str, value, cls, what: str | None = None):
    """``value`` if it is an instance of ``cls`` (a class or tuple), else a TypeError naming ``what``."""
    if not isinstance(value, cls):
        expected = what or (cls.__name__ if isinstance(cls, type) else " or ".join(c.__name__ for c in cls))
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
    return value


def function(name: str, value, signature: str = "", optional: bool = False):
    """A callable (or None when ``optional``); ``signature`` says what it is called with."""
    if value is None and optional:
        return None
    if not callable(value):
        expected = f"callable {signature}".rstrip() + (" or None" if optional else "")
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
    return value


def sizes(name: str, value, min_dims: int = 1) -> tuple[int, ...]:
    """A shape: a tuple/list/``torch.Size`` of at least ``min_dims`` positive ints, as a tuple."""
    shape = tuple(value) if isinstance(value, (tuple, list, torch.Size)) else value
    if not isinstance(shape, tuple) or len(shape) < min_dims or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f"{name} must be a tuple of >= {min_dims} positive ints, got {value!r}")
    return shape


def like(name: str, value: torch.Tensor, ref: torch.Tensor, ref_name: str) -> torch.Tensor:
    """A tensor with ``ref``'s shape, dtype and device (TypeError for dtype, else ValueError)."""
    tensor(name, value)
    for what, got, want in (("shape", tuple(value.shape), tuple(ref.shape)), ("dtype", value.dtype, ref.dtype),
                            ("device", value.device, ref.device)):
        if got != want:
            raise (TypeError if what == "dtype" else ValueError)(
                f"{name} must have the {what} of {ref_name} ({want}), got {got}")
    return value


def generator(name: str, value, device: torch.device) -> torch.Generator | None:
    """None, or a ``torch.Generator`` on ``device``'s type (a CPU generator cannot seed CUDA draws)."""
    if value is None:
        return None
    instance(name, value, torch.Generator, "a torch.Generator")
    if value.device.type != device.type:
        raise ValueError(f"{name} must be on the device type {device.type!r}, got {value.device.type!r}")
    return value


def that(condition, message: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error(message)`` unless ``condition``: the one-line form of a check no helper above states."""
    if not condition:
        raise error(message)


def shape(name: str, value, expected: tuple, spelled: str = "") -> torch.Tensor:
    """A tensor of shape ``expected`` (an int per dim, ``None`` for any size).

    ``spelled`` names the dims for the message, e.g. ``"(B, N, context_dim)"``. A wrong first
    dim is reported as a batch-size mismatch, the commonest mistake when tensors are paired.
    """
    tensor(name, value)
    got = tuple(value.shape)
    if len(got) == len(expected) and all(e is None or g == e for g, e in zip(got, expected, strict=True)):
        return value
    want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ("," if len(expected) == 1 else "") + ")"
    batch = len(got) == len(expected) and expected[0] is not None and got[0] != expected[0]
    hint = f": batch size {got[0]}, expected {expected[0]}" if batch else ""
    raise ValueError(f"{name} must have shape {spelled + ' = ' if spelled else ''}{want}, got {got}{hint}")


def conditions(prompt_embeds, negative_prompt_embeds=None, context_dim: int | None = None,
               batch_size: int | None = None) -> list[torch.Tensor]:
    """The K condition tensors of a sampling call (one tensor, or a list for weighted prompts),
    each — and ``negative_prompt_embeds`` — with the first one's shape, dtype and device, finite,
    ``context_dim`` wide and ``batch_size`` rows when those are given."""
    conds = [prompt_embeds] if isinstance(prompt_embeds, torch.Tensor) else prompt_embeds
    if not isinstance(conds, (list, tuple)) or not conds:
        raise TypeError("prompt_embeds must be a tensor (B, N, D) or a non-empty list of such tensors "
                        f"(encode prompts first), got {type(prompt_embeds).__name__}")
    named = {("prompt_embeds" if len(conds) == 1 else f"prompt_embeds[{k}]"): c for k, c in enumerate(conds)}
    if negative_prompt_embeds is not None:
        named["negative_prompt_embeds"] = negative_prompt_embeds
    ref = tensor("prompt_embeds", conds[0])
    for name, c in named.items():
        tensor(name, like(name, c, ref, "prompt_embeds"), floating=c.is_floating_point())
    if context_dim is not None and (ref.ndim < 1 or ref.shape[-1] != context_dim):
        raise ValueError(f"prompt_embeds must have last dimension context_dim={context_dim} (the denoiser's), "
                         f"got shape {tuple(ref.shape)}")
    if batch_size is not None and (ref.ndim < 1 or ref.shape[0] != batch_size):
        raise ValueError(f"shape[0] (batch size {batch_size}) must equal prompt_embeds' batch size "
                         f"{ref.shape[0] if ref.ndim else None}")
    return list(conds)


def fields(config) -> None:
    """Check a dataclass config against its fields' declared types and ``metadata``:
    ``bool`` fields must be bools; ``int``/``float`` fields must lie in
    ``[metadata["low"], metadata["high"]]`` (``"open_low"`` excludes ``low``); a field with
    ``metadata["choices"]`` must be one of them. The constraints sit beside the fields."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, meta, kind = getattr(config, f.name), f.metadata, hints[f.name]
        if "choices" in meta:
            one_of(f.name, value, meta["choices"])
        elif kind is bool:
            boolean(f.name, value)
        elif kind is int:
            integer(f.name, value, meta.get("low"), meta.get("high"))
        elif kind is float:
            real(f.name, value, meta.get("low"), meta.get("high"), meta.get("open_low", False))


def latents(value, generator_, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device):
    """A sampling call's x_T: ``value`` (``shape``, ``dtype``, ``device``) or None (then it is drawn
    with ``generator_``, which must be a ``torch.Generator`` on ``device``'s type, or None)."""
    generator("generator", generator_, device)
    if value is None:
        return None
    x_T = torch.empty((), dtype=dtype, device=device).expand(shape)  # the layout, without allocating
    return like("latents", value, x_T, "x_T (shape, the embeddings' dtype and device)")


def positive(name: str, value) -> int:
    """A positive Python int (not a bool): a width, a count, a number of heads."""
    if integer(name, value) <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def token_ids(name: str, value, max_length: int | None = None) -> torch.Tensor:
    """A ``(B, L)`` tensor of integer token ids, with ``1 ≤ L ≤ max_length`` when given."""
    tensor(name, value)
    that(not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool),
         f"{name} must hold integer token ids, got dtype {value.dtype}", TypeError)
    bound = "1 <= L" if max_length is None else f"1 <= L <= {max_length}"
    that(value.ndim == 2 and 1 <= value.shape[1] <= (max_length or value.shape[1]),
         f"{name} must have shape (B, L) with {bound}, got {tuple(value.shape)}")
    return value
