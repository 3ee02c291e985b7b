"""The tilted target p̃_γ(x) ∝ p(x | c)^γ p(x)^(1 − γ) of a mixture.

Introduced in notebook 06. Classifier-free guidance with scale γ is often *said*
to sample this distribution (Ho & Salimans 2022, eq. 6 read as a score); on a
:class:`~tutorial_lib.mixture.GaussianMixture` it can be computed at ``t = 0`` -- exactly where
a closed form exists, otherwise on a grid -- and compared with what CFG really samples
(:mod:`tutorial_lib.mixture_experiments`).

- :func:`tilted_log_prob` the unnormalised log density
  γ log p(x | c) + (1 − γ) log p(x);
- :func:`tilted_target` its moments and samples, a :class:`TiltedTarget`.
"""

from __future__ import annotations

from typing import Any

import torch

from . import _checks
from .mixture import GaussianMixture

__all__ = ["TiltedTarget", "tilted_target", "tilted_log_prob"]


def tilted_log_prob(mixture: GaussianMixture, x: torch.Tensor, c: int, gamma: float) -> torch.Tensor:
    """Unnormalised γ log p(x | c) + (1 − γ) log p(x) at ``t = 0``.

    Args:
        mixture: the :class:`~tutorial_lib.mixture.GaussianMixture`.
        x: ``(..., d)`` points; c: the class; gamma: γ ≥ 0.

    Returns:
        ``(...)`` float64.
    """
    return _log_tilt(mixture, x, mixture._check_class_int(c), _checks.real("gamma", gamma, low=0.0))


def _log_tilt(mixture: GaussianMixture, x: torch.Tensor, c: int, gamma: float) -> torch.Tensor:
    return gamma * mixture.log_prob(x, None, c) + (1.0 - gamma) * mixture.log_prob(x, None, None)


def _fmt_vec(v: Any, digits: int = 3, sign: bool = True) -> str:
    """A number or a vector as text: ``+1.000`` or ``(+1.000, -0.500)`` (tables and reprs)."""
    v = torch.as_tensor(v).reshape(-1).tolist()
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    if len(v) == 1:
        return f.format(v[0])
    return "(" + ", ".join(f.format(x) for x in v) + ")"


class TiltedTarget:
    """p̃_γ(x) ∝ p(x | c)^γ p(x)^(1 − γ) at ``t = 0``: moments and samples.

    Introduced in notebook 06. Build it with :func:`tilted_target`. Attributes:

    - ``gamma``, ``c``; ``exact`` (bool) and ``method`` (a sentence saying how it was computed);
    - ``mean`` ``(d,)``, ``covariance`` ``(d, d)``, ``std`` ``(d,)`` (float64);
    - for the grid method: ``grid_error`` (max abs change of ``mean`` and ``std`` when the
      grid is halved -- an estimate of the quadrature error), ``boundary_mass`` (the
      probability in the outermost ring of cells: how much the box may cut off),
      ``points`` ``(M, d)`` cell centres, ``probs`` ``(M,)`` cell probabilities,
      ``cell`` ``(d,)`` cell widths and ``log_normalizer`` (log Z).
    """

    def __init__(self, gamma: float, c: int, *, mixture: GaussianMixture | None = None,
                 exact_class: int | None = None,
                 points: torch.Tensor | None = None, probs: torch.Tensor | None = None,
                 cell: torch.Tensor | None = None, log_normalizer: float | None = None,
                 grid_error: float | None = None, boundary_mass: float | None = None,
                 method: str = "") -> None:
        self.gamma, self.c, self.method = gamma, c, method
        self.exact = mixture is not None  # then the target is mixture's p(x | exact_class)
        self._mixture, self._exact_class = mixture, exact_class
        self.points, self.probs, self.cell = points, probs, cell
        self.log_normalizer = log_normalizer
        self.grid_error, self.boundary_mass = grid_error, boundary_mass
        if mixture is not None:
            self.mean, self.covariance = mixture.mean(exact_class), mixture.covariance(exact_class)
        else:
            self.mean, self.covariance = _grid_moments(points, probs)
        self.std = self.covariance.diagonal().sqrt()

    def __repr__(self) -> str:
        fmt = _fmt_vec
        err = "" if self.exact else f", grid_error={self.grid_error:.1e}"
        return (f"TiltedTarget(gamma={self.gamma:g}, c={self.c}, mean={fmt(self.mean)}, "
                f"std={fmt(self.std, sign=False)}, exact={self.exact}{err})")

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples ``(n, d)`` float64: exact when ``exact``, else a grid cell drawn with
        probability ``probs`` (categorical) plus uniform jitter inside the cell -- the
        inverse-CDF method for the piecewise-constant density on the grid (its variance
        exceeds the grid variance by ``cell**2 / 12``)."""
        n = _checks.integer("n", n, 1)
        if self._mixture is not None:
            return self._mixture.sample(n, self._exact_class, generator)
        idx = torch.multinomial(self.probs, n, replacement=True, generator=generator)
        u = torch.rand(n, self.points.shape[1], generator=generator, dtype=torch.float64) - 0.5
        return self.points[idx] + u * self.cell


def _grid_moments(points: torch.Tensor, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = probs @ points
    dev = points - mean
    return mean, (probs[:, None] * dev).T @ dev


def _grid(lo: torch.Tensor, hi: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres ``(size**d, d)`` of a regular grid on the box [lo, hi], and the cell widths."""
    cell = (hi - lo) / size
    axes = [lo[i] + cell[i] * (torch.arange(size, dtype=torch.float64) + 0.5) for i in range(lo.numel())]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([g.reshape(-1) for g in mesh], dim=-1), cell


def tilted_target(
    mixture: GaussianMixture,
    c: int,
    gamma: float,
    grid_size: int | None = None,
    margin: float = 8.0,
) -> TiltedTarget:
    """The tilted distribution p̃_γ(x) ∝ p(x | c)^γ p(x)^(1 − γ)
    that CFG is often said to sample (Ho & Salimans 2022, eq. 6 read as a score).

    Introduced in notebook 06. **When is there a closed form?** Only when the
    tilted density is itself a Gaussian mixture:

    - γ = 1: it is p(x | c); γ = 0: it is p(x);
    - p(x | c) = p(x) (every component belongs to class ``c``): it is p(x).

    In these cases the result is exact (``exact=True``). Otherwise there is none,
    *even for one Gaussian per class with a shared covariance*: the marginal
    p(x) = Σ_c π_c p(x | c) is a mixture, and a power
    p(x)^(1 − γ) of a mixture is not a mixture (for two Gaussians
    p̃_γ = p(x | c) (p(c | x)/π_c)^(γ − 1) with a logistic
    p(c | x)). The Gaussian-times-Gaussian formula often quoted
    (precision γ Λ_c + (1 − γ)Λ_u) needs a *Gaussian*
    unconditional density, which a labelled mixture with two or more classes never has.

    **The numerical method** (1-D and 2-D): evaluate
    γ log p(x | c) + (1 − γ) log p(x) at the centres of a regular
    grid, normalise with log-sum-exp (midpoint rule: Z ≈ h^d Σ_j p̃(x_j)),
    and read off the moments. The box is the means of the relevant components
    ± ``margin`` standard deviations: for γ ≥ 1 the class-``c``
    components suffice, because p(x) ≥ π_c p(x | c) and Z ≥ 1
    (Jensen) give p̃_γ ≤ π_c^(1 − γ) p(x | c); for
    γ < 1 all components. ``grid_error`` compares with the half-resolution
    grid and ``boundary_mass`` is the mass of the outermost cells; both are tiny for the
    defaults (the midpoint rule converges faster than any power of the cell width for
    smooth, rapidly decaying densities).

    Args:
        mixture: the :class:`GaussianMixture` (1-D or 2-D).
        c: the class.
        gamma: γ ≥ 0.
        grid_size: cells per axis (default 4096 in 1-D, 400 in 2-D).
        margin: box half-width beyond the component means, in component standard deviations.
    """
    c = mixture._check_class_int(c)
    gamma = _checks.real("gamma", gamma, low=0.0)
    if gamma == 1.0:
        return TiltedTarget(gamma, c, mixture=mixture, exact_class=c, method="exact: p(x|c)")
    if gamma == 0.0 or bool(mixture._member[:, c].all()):
        why = "gamma = 0" if gamma == 0.0 else "p(x|c) = p(x)"
        return TiltedTarget(gamma, c, mixture=mixture, exact_class=None, method=f"exact: p(x) ({why})")
    grid_size = _checks.integer("grid_size", (4096 if mixture.dim == 1 else 400) if grid_size is None else grid_size, 8)
    margin = _checks.real("margin", margin, low=0.0, open_low=True)
    return _grid_target(mixture, c, gamma, grid_size, margin)


def _grid_target(mixture: GaussianMixture, c: int, gamma: float, grid_size: int, margin: float) -> TiltedTarget:
    """The grid method of :func:`tilted_target`: midpoint rule on a box, error from the half grid."""
    comps = mixture.labels == c if gamma >= 1.0 else torch.ones_like(mixture.labels, dtype=torch.bool)
    sd = mixture.covariances[comps].diagonal(dim1=-2, dim2=-1).sqrt()  # (K', d)
    lo = (mixture.means[comps] - margin * sd).min(0).values
    hi = (mixture.means[comps] + margin * sd).max(0).values

    def solve(size: int):
        points, cell = _grid(lo, hi, size)
        logf = _log_tilt(mixture, points, c, gamma)
        log_z = torch.logsumexp(logf, 0) + cell.log().sum()
        probs = torch.softmax(logf, 0)
        return points, cell, probs, float(log_z)

    points, cell, probs, log_z = solve(grid_size)
    mean, cov = _grid_moments(points, probs)
    p2, _, q2, _ = solve(grid_size // 2)
    mean2, cov2 = _grid_moments(p2, q2)
    err = max(float((mean - mean2).abs().max()), float((cov.diagonal().sqrt() - cov2.diagonal().sqrt()).abs().max()))
    on_edge = torch.zeros(points.shape[0], dtype=torch.bool)
    for i in range(mixture.dim):
        on_edge |= (points[:, i] < lo[i] + cell[i]) | (points[:, i] > hi[i] - cell[i])
    return TiltedTarget(
        gamma, c, points=points, probs=probs, cell=cell, log_normalizer=log_z, grid_error=err,
        boundary_mass=float(probs[on_edge].sum()),
        method=f"grid: {grid_size}^{mixture.dim} cells on [{_fmt_vec(lo)}, {_fmt_vec(hi)}]",
    )
