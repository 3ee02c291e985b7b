"""The argument checks shared by the package's entry points.

Public constructors and functions call these once, where input enters, so that a
learner's mistake is reported with the argument's name and what was expected;
inner layers trust what they are given and do not re-check on every call.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = ["real", "integer", "boolean", "one_of", "tensor"]


def real(name: str, value, low: float | None = None, high: float | None = None) -> float:
    """A finite real number in ``[low, high]`` (a 0-d tensor is accepted), as a float."""
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.dtype.is_complex:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def integer(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """A Python int (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be in {bounds}, got {value}")
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
