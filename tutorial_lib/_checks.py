"""The argument checks shared by the package's entry points.

Public constructors and functions call these once, where input enters, so that a
learner's mistake is reported with the argument's name and what was expected;
inner layers trust what they are given and do not re-check on every call.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing

import torch


def that(condition, message: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error(message)`` unless ``condition``: the one-line form of a check no helper below states."""
    if not condition:
        raise error(message)


def _typed(name: str, value, ok: bool, expected: str):
    """``value`` if ``ok``, else a TypeError saying ``name must be <expected>, got <its type>``."""
    that(ok, f"{name} must be {expected}, got {type(value).__name__}", TypeError)
    return value


def real(name: str, value, low: float | None = None, high: float | None = None, open_low: bool = False) -> float:
    """A finite real number in ``[low, high]`` (``(low, high]`` if ``open_low``; a 0-d tensor is
    accepted), as a float."""
    value = value.item() if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.dtype.is_complex else value
    value = float(_typed(name, value, isinstance(value, numbers.Real) and not isinstance(value, bool), "a real number"))
    that(math.isfinite(value), f"{name} must be finite, got {value}")
    interval = (f"in ({low}, {high}]" if high is not None else f"> {low}") if open_low else f">= {low}"
    that(low is None or not (value < low or (open_low and value == low)), f"{name} must be {interval}, got {value}")
    that(high is None or value <= high, f"{name} must be <= {high}, got {value}")
    return value


def integer(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """A Python int (not a bool) in ``[low, high]``."""
    value = int(_typed(name, value, isinstance(value, numbers.Integral) and not isinstance(value, bool), "an int"))
    bounds = f"in [{low}, {high}]" if None not in (low, high) else (f">= {low}" if high is None else f"<= {high}")
    that((low is None or value >= low) and (high is None or value <= high), f"{name} must be {bounds}, got {value}")
    return value


def positive(name: str, value) -> int:
    """A positive Python int (not a bool): a width, a count, a number of heads."""
    that(integer(name, value) > 0, f"{name} must be positive, got {value}")
    return int(value)


def boolean(name: str, value) -> bool:
    return _typed(name, value, isinstance(value, bool), "a bool")


def one_of(name: str, value, options) -> None:
    that(value in options, f"{name} must be one of {tuple(options)}, got {value!r}")


def instance(name: str, value, cls, what: str | None = None):
    """``value`` if it is an instance of ``cls`` (a class or tuple), else a TypeError naming ``what``."""
    names = " or ".join(c.__name__ for c in (cls if isinstance(cls, tuple) else (cls,)))
    return _typed(name, value, isinstance(value, cls), what or names)


def function(name: str, value, signature: str = "", optional: bool = False):
    """A callable (or None when ``optional``); ``signature`` says what it is called with."""
    expected = f"callable {signature}".rstrip() + (" or None" if optional else "")
    return _typed(name, value, callable(value) or (optional and value is None), expected)


def tensor(name: str, value) -> torch.Tensor:
    """A ``torch.Tensor`` (the helpers below check its dtype and shape)."""
    return instance(name, value, torch.Tensor, "a torch.Tensor")


def floats(name: str, value, min_ndim: int = 1) -> torch.Tensor:
    """A floating-point tensor of at least ``min_ndim`` dims ``(B, ...)`` (not checked finite)."""
    that(tensor(name, value).is_floating_point(), f"{name} must be a floating-point tensor, got dtype {value.dtype}", TypeError)
    that(value.ndim >= min_ndim, f"{name} must have at least {min_ndim} dims, got shape {tuple(value.shape)}")
    return value


def integers(name: str, value, what: str = "an integer tensor", ndim: int | None = None) -> torch.Tensor:
    """A tensor of an integer dtype (not bool, floating or complex), of ``ndim`` dims if given;
    ``what`` says what it holds, for the message."""
    _typed(name, value, isinstance(value, torch.Tensor), what)
    ok = not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)
    that(ok and ndim in (None, value.ndim), f"{name} must be {what}, got {value.dtype} {tuple(value.shape)}", TypeError)
    return value


def sizes(name: str, value, min_dims: int = 1) -> tuple[int, ...]:
    """A shape: a tuple/list/``torch.Size`` of at least ``min_dims`` positive ints, as a tuple."""
    shape = tuple(value) if isinstance(value, (tuple, list, torch.Size)) else value
    ok = isinstance(shape, tuple) and len(shape) >= min_dims and all(type(s) is int and s > 0 for s in shape)
    that(ok, f"{name} must be a tuple of >= {min_dims} positive ints, got {value!r}")
    return shape


def like(name: str, value, ref: torch.Tensor, ref_name: str, possessive: bool = False) -> torch.Tensor:
    """A tensor with ``ref``'s shape, dtype and device (TypeError for dtype, else ValueError); the message
    says "the shape of ref (want)" or, if ``possessive``, "ref's shape want"."""
    tensor(name, value)
    for what, got, want in (("shape", tuple(value.shape), tuple(ref.shape)), ("dtype", value.dtype, ref.dtype),
                            ("device", value.device, ref.device)):
        spelled = f"{ref_name}'s {what} {want}" if possessive else f"the {what} of {ref_name} ({want})"
        that(got == want, f"{name} must have {spelled}, got {got}", TypeError if what == "dtype" else ValueError)
    return value


def shape(name: str, value, expected: tuple, spelled: str = "") -> torch.Tensor:
    """A tensor of shape ``expected`` (an int per dim, ``None`` for any size).

    ``spelled`` names the dims for the message, e.g. ``"(B, N, context_dim)"``. A wrong first
    dim is reported as a batch-size mismatch, the commonest mistake when tensors are paired.
    """
    got = tuple(tensor(name, value).shape)
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
    that(isinstance(conds, (list, tuple)) and conds, "prompt_embeds must be a tensor (B, N, D) or a non-empty list of "
         f"such tensors (encode prompts first), got {type(prompt_embeds).__name__}", TypeError)
    named = {("prompt_embeds" if len(conds) == 1 else f"prompt_embeds[{k}]"): c for k, c in enumerate(conds)}
    if negative_prompt_embeds is not None:
        named["negative_prompt_embeds"] = negative_prompt_embeds
    ref = tensor("prompt_embeds", conds[0])
    for name, c in named.items():
        that(not like(name, c, ref, "prompt_embeds").is_floating_point() or bool(torch.isfinite(c).all()), f"{name} contains NaN or inf")
    that(context_dim is None or (ref.ndim >= 1 and ref.shape[-1] == context_dim), "prompt_embeds must have last "
         f"dimension context_dim={context_dim} (the denoiser's), got shape {tuple(ref.shape)}")
    that(batch_size is None or (ref.ndim >= 1 and ref.shape[0] == batch_size), f"shape[0] (batch size {batch_size}) "
         f"must equal prompt_embeds' batch size {ref.shape[0] if ref.ndim else None}")
    return list(conds)


def fields(config) -> None:
    """Check a dataclass config against its fields' declared types and ``metadata``:
    ``bool`` fields must be bools; ``int``/``float`` fields must lie in
    ``[metadata["low"], metadata["high"]]`` (``"open_low"`` excludes ``low``); a field with
    ``metadata["choices"]`` must be one of them. The constraints sit beside the fields."""
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
    instance("generator", generator_, (torch.Generator, type(None)), "a torch.Generator or None")
    that(generator_ is None or generator_.device.type == device.type, "generator must be on the device type "
         f"{device.type!r} (a CPU generator cannot seed CUDA draws), got {getattr(generator_, 'device', device).type!r}")
    x_T = torch.empty((), dtype=dtype, device=device).expand(shape)  # the layout, without allocating
    return None if value is None else like("latents", value, x_T, "x_T (shape, the embeddings' dtype and device)")


def token_ids(name: str, value, max_length: int | None = None) -> torch.Tensor:
    """A ``(B, L)`` tensor of integer token ids, with ``1 ≤ L ≤ max_length`` when given."""
    integers(name, tensor(name, value), "a tensor of integer token ids")
    bound = "1 <= L" if max_length is None else f"1 <= L <= {max_length}"
    that(value.ndim == 2 and 1 <= value.shape[1] <= (max_length or value.shape[1]),
         f"{name} must have shape (B, L) with {bound}, got {tuple(value.shape)}")
    return value
