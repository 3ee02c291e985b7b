"""Small helpers every notebook uses: reproducible seeding and device choice.

Introduced in notebook 00.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from . import _checks


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a ``torch.Generator`` seeded the same.

    Global seeding makes incidental randomness (weight initialisation, dropout)
    reproducible; the returned generator is what the course passes explicitly
    to samplers and noise draws, so results do not depend on call order.

    Args:
        seed: a non-negative integer.

    Returns:
        A CPU ``torch.Generator`` seeded with ``seed``.
    """
    seed = _checks.integer("seed", int(seed) if isinstance(seed, np.integer) else seed, 0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    return torch.Generator().manual_seed(seed)


def get_device(prefer: str | None = None) -> torch.device:
    """Pick the best available device: CUDA, then Apple's MPS, then the CPU.

    Args:
        prefer: optional explicit choice ("cpu", "cuda", "mps"); it is checked
            for availability and an unavailable choice raises ``ValueError``.

    Returns:
        A ``torch.device``. The course runs entirely on the CPU; a GPU only
        makes it faster.
    """
    available = {"cpu": True, "cuda": torch.cuda.is_available()}
    mps = getattr(torch.backends, "mps", None)
    available["mps"] = bool(mps is not None and mps.is_available())
    if prefer is not None:
        _checks.one_of("prefer", prefer, sorted(available) + [None])
        _checks.that(available[prefer], f"prefer={prefer!r} is not available on this machine")
        return torch.device(prefer)
    for name in ("cuda", "mps"):
        if available[name]:
            return torch.device(name)
    return torch.device("cpu")


def show_source(obj, fold_docstring: bool = True) -> None:
    """Print the source of a function or class, as the notebooks show the package's code.

    With ``fold_docstring`` the docstring is shortened to its first line and a pointer to
    ``help(name)`` (the full text is one call away; the code is what the notebook is about).
    Notebooks show named things: a piece of code worth showing is its own function, so no
    notebook cuts source out by string search.
    """
    import ast
    import inspect
    import textwrap

    src = textwrap.dedent(inspect.getsource(obj))
    lines = src.splitlines()
    body = ast.parse(src).body[0].body
    first = body[0] if body else None
    if fold_docstring and isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        indent = " " * first.col_offset
        summary = inspect.getdoc(obj).splitlines()[0]
        lines[first.lineno - 1 : first.end_lineno] = [f'{indent}"""{summary} (docstring: help({obj.__name__}))"""']
    print("\n".join(lines))


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run a block with ``num_threads`` torch intra-op threads, then restore the count
    (``None`` leaves it alone). For loops of many tiny tensor operations (the 2-D mixtures),
    where two threads on a busy CPU measured many times slower than one."""
    if num_threads is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)
