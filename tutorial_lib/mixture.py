"""Analytic Gaussian mixtures: exact densities, scores, posteriors, an oracle denoiser.

Introduced in notebook 05 (classifier guidance) and used again in notebooks 06
(classifier-free guidance) and 08 (the sampler). A Gaussian mixture is the one
data distribution for which every quantity of a diffusion model is known in
closed form, so guidance can be *proved* numerically instead of asserted.

The data are x_0 ∈ ℝ^d (``d`` = 1 or 2) drawn from

    p(x_0) = Σ_{k=1..K} w_k 𝒩(x_0; μ_k, Σ_k),

and each component ``k`` carries a class label c_k (several components
may share a class). The class prior is π_c = Σ_{k: c_k = c} w_k
and the class-conditional density is the sub-mixture
p(x_0 | c) = Σ_{k: c_k = c} (w_k / π_c) 𝒩(x_0; μ_k, Σ_k).

The forward process of the course's :class:`~tutorial_lib.schedule.NoiseSchedule`
is x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε,
ε ~ 𝒩(0, I). A linear map of a Gaussian plus an
independent Gaussian is Gaussian, so the noised density is again a mixture
with the *same* weights (eq. M1):

    p_t(x) = Σ_k w_k 𝒩(x; √ᾱ_t μ_k, Σ_{k,t}),   Σ_{k,t} = ᾱ_t Σ_k + (1 − ᾱ_t) I.

Everything else follows in closed form (``r_k(x)`` are the responsibilities,
the softmax over ``k`` of log w_k + log 𝒩_k(x)):

- score (M2): ∇ₓ log p_t(x) = −Σ_k r_k(x) Σ_{k,t}⁻¹(x − √ᾱ_t μ_k),
  and the class-conditional score is the same sum over the components of class ``c``;
- class posterior (M3): p_t(c | x) = Σ_{k: c_k = c} r_k(x), and
  ∇ₓ log p_t(c | x) = ∇ₓ log p_t(x | c) − ∇ₓ log p_t(x) (Bayes);
- noise prediction (M4): ε(x, t) = −√(1 − ᾱ_t) ∇ₓ log p_t(x),
  the minimiser of the denoising loss;
- Tweedie's posterior mean (M5):
  𝔼[x_0 | x_t] = (x_t + (1 − ᾱ_t) ∇ₓ log p_t(x_t)) / √ᾱ_t.

Implementation note: all Σ_{k,t} share the eigenvectors of
Σ_k (Σ_k = U_k diag(λ_k) U_kᵀ
gives Σ_{k,t} = U_k diag(ᾱ_t λ_k + 1 − ᾱ_t) U_kᵀ),
so one eigendecomposition at construction makes every later inverse and
log-determinant an elementwise division: fully vectorised over samples and
timesteps, in float64, with log-sum-exp for stability.

The main objects:

- :class:`GaussianMixture` densities, scores, posteriors, sampling at ``t = 0``;
- :class:`OracleDenoiser` the exact ε-model with the U-Net's call signature
  ``denoiser(x_t, t, context) -> eps``, so :class:`~tutorial_lib.sampler.ConditionalDDIMSampler`
  runs on it unchanged; the context is a one-hot ``(B, 1, C + 1)`` whose last slot is
  "no condition" (:meth:`GaussianMixture.condition_context`);
- :class:`ExactClassifier` the exact noise-robust classifier ``(x_t, t) -> logits``
  for the sampler's classifier guidance;
- :func:`example_mixture_1d`, :func:`example_mixture_2d`, :func:`interval_demo_mixture`,
  the notebooks' mixtures.

Built on top of this module (it imports neither): :mod:`tutorial_lib.tilted`, the
tilted target p(x | c)^γ p(x)^(1 − γ), and
:mod:`tutorial_lib.mixture_experiments`, what the notebooks run on a mixture with the
sampler (DDPM and DDIM sampling with CFG, the guidance sweep, the interval demo).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from . import _checks
from .schedule import NoiseSchedule

__all__ = ["GaussianMixture", "OracleDenoiser", "ExactClassifier", "example_mixture_1d", "example_mixture_2d",
           "interval_demo_mixture"]

_LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------
# input conversion (each public entry point converts its arguments once)
# ----------------------------------------------------------------------------


def _as_float64(name: str, value: Any) -> torch.Tensor:
    """A real tensor or sequence of numbers as a finite float64 tensor."""
    if isinstance(value, torch.Tensor):
        _checks.that(not (value.is_complex() or value.dtype == torch.bool), f"{name} must be a real tensor, got dtype {value.dtype}", TypeError)
        t = value.detach().to(torch.float64)
    else:
        try:
            t = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a tensor or a sequence of numbers") from exc
    _checks.that(bool(torch.isfinite(t).all()), f"{name} must be finite")
    return t


def _integer_tensor(name: str, value: Any, what: str) -> torch.Tensor:
    """``value`` as a long tensor on the CPU; a TypeError for float, bool or complex dtypes."""
    tt = torch.as_tensor(value)  # a Python bool becomes a bool tensor, rejected with the rest
    _checks.that(not (tt.is_floating_point() or tt.is_complex() or tt.dtype == torch.bool), f"{name} must be {what}, got dtype {tt.dtype}", TypeError)
    return tt.to(device="cpu", dtype=torch.long)


def _alphas_cumprod_of(schedule: Any) -> torch.Tensor:
    """``schedule.alphas_cumprod`` as a float64 tensor ``(T,)``; accepts any object that has it."""
    ac = getattr(NoiseSchedule() if schedule is None else schedule, "alphas_cumprod", None)
    _checks.that(ac is not None, f"schedule must have `alphas_cumprod` (a NoiseSchedule), got {type(schedule).__name__}", TypeError)
    return torch.as_tensor(ac).detach().to(torch.float64).reshape(-1)  # in (0, 1]: NoiseSchedule checks its betas


def _broadcast_flat(name: str, value: torch.Tensor, batch: tuple[int, ...]) -> torch.Tensor:
    """``value`` broadcast to the batch shape and flattened to ``(N,)``; ``(1,)`` if it has one element."""
    if value.numel() == 1 and value.ndim <= len(batch):
        return value.reshape(1)
    try:
        return torch.broadcast_to(value, batch).reshape(-1)
    except RuntimeError as exc:
        raise ValueError(f"{name} of shape {tuple(value.shape)} does not broadcast to the batch shape {batch}") from exc


def _alpha_bar(alphas_cumprod: torch.Tensor, t: Any, batch: tuple[int, ...]) -> torch.Tensor:
    """``alphas_cumprod[t]`` in float64, ``(N,)`` for the batch shape, or ``(1,)`` if ``t`` is shared.

    ``t=None`` gives 1 (clean data); non-integer float timesteps are interpolated linearly.
    """
    if t is None:
        return torch.ones(1, dtype=torch.float64)
    T = alphas_cumprod.numel()
    tt = torch.as_tensor(t)  # a Python bool becomes a bool tensor, rejected here
    _checks.that(not (tt.dtype == torch.bool or tt.is_complex()), f"t must be integer or float timesteps, got dtype {tt.dtype}", TypeError)
    tt = _broadcast_flat("t", tt.detach().cpu(), batch)
    lo_t, hi_t = torch.aminmax(tt)
    _checks.that(0 <= lo_t <= hi_t <= T - 1, f"t must be finite timesteps in [0, {T - 1}], got values in [{lo_t}, {hi_t}]")
    if not tt.is_floating_point():  # the common case: integer training timesteps
        if int(lo_t) == int(hi_t):  # one shared timestep (the sampler's case): broadcast later
            return alphas_cumprod[int(lo_t)].reshape(1)
        return alphas_cumprod[tt]
    tt = tt.to(torch.float64)
    if float(lo_t) == float(hi_t):
        tt = tt[:1]
    lo = tt.floor().long()
    hi = torch.clamp(lo + 1, max=T - 1)
    frac = tt - lo.to(torch.float64)
    return alphas_cumprod[lo] * (1 - frac) + alphas_cumprod[hi] * frac


# ----------------------------------------------------------------------------
# the mixture
# ----------------------------------------------------------------------------


def _parameters(weights: Any, means: Any, covariances: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(w (K,), mu (K, d), Sigma (K, d, d))`` in float64 from the accepted layouts; ``w`` sums to 1."""
    w = _as_float64("weights", weights).reshape(-1)
    K = w.numel()
    _checks.that(K >= 1 and bool((w > 0).all()), "weights must be at least one component, all positive")
    mu = _as_float64("means", means)
    given = tuple(mu.shape)
    mu = mu[:, None] if mu.ndim == 1 else mu
    _checks.that(mu.ndim == 2 and mu.shape[0] == K and mu.shape[1] in (1, 2), f"means must have shape (K={K}, d in 1..2) or (K,), got {given}")
    d = mu.shape[1]
    cov = _as_float64("covariances", covariances)
    layouts = {(K,): lambda v: v[:, None, None] * torch.eye(d, dtype=torch.float64),  # isotropic
               (K, d): torch.diag_embed, (K, d, d): lambda v: v}  # diagonal, full
    _checks.that(tuple(cov.shape) in layouts, f"covariances must have shape ({K}, {d}, {d}), ({K}, {d}) or ({K},), got {tuple(cov.shape)}")
    cov = layouts[tuple(cov.shape)](cov)
    _checks.that(torch.allclose(cov, cov.transpose(-1, -2), atol=1e-10, rtol=1e-8), "covariances must be symmetric")
    return w / w.sum(), mu, 0.5 * (cov + cov.transpose(-1, -2))


def _class_labels_of(labels: Any, K: int, num_classes: int | None) -> tuple[torch.Tensor, int]:
    """``(labels (K,) long, C)``: every class in ``0..C-1`` owns at least one component."""
    if labels is None:
        lab = torch.arange(K)
    else:
        lab = torch.as_tensor(labels)
        whole = not lab.is_floating_point() or torch.equal(lab, lab.round())  # 1.0 is accepted, 0.5 is not
        _checks.that(whole and lab.dtype != torch.bool and not lab.is_complex(), f"labels must be integers, got dtype {lab.dtype}", TypeError)
        lab = lab.to(torch.long).reshape(-1)
        _checks.that(lab.numel() == K, f"labels must have one entry per component (K={K}), got {lab.numel()}")
    C = int(lab.max()) + 1 if num_classes is None else _checks.integer("num_classes", num_classes, 1)
    _checks.that(0 <= int(lab.min()) and int(lab.max()) < C, f"labels must be in 0..{C - 1}, got {lab.tolist()}")
    missing = torch.nonzero(torch.bincount(lab, minlength=C) == 0).reshape(-1).tolist()
    _checks.that(not missing, f"every class needs at least one component; classes {missing} have none")
    return lab, C


class GaussianMixture:
    """A Gaussian mixture in 1-D or 2-D whose components carry class labels.

    Introduced in notebook 05. See the module docstring for equations M1-M5.

    Args:
        weights: ``(K,)`` positive component weights w_k (normalised to sum to 1).
        means: ``(K, d)`` component means μ_k; in 1-D ``(K,)`` is accepted.
        covariances: the Σ_k, one of ``(K, d, d)`` full (symmetric positive
            definite), ``(K, d)`` diagonal variances, or ``(K,)`` one isotropic variance
            per component (in 1-D, ``(K,)`` is simply the variances).
        labels: ``(K,)`` integer class of each component, in ``0..C-1``; every class
            must own at least one component. Default: each component is its own class.
        num_classes: ``C``; default ``max(labels) + 1``.
        schedule: anything with ``alphas_cumprod`` (``(T,)``, e.g. a
            :class:`~tutorial_lib.schedule.NoiseSchedule`) that maps a training timestep
            ``t`` to ᾱ_t; default ``NoiseSchedule()``.

    Conventions for every method:

    - ``x`` is ``(..., d)`` (in 1-D a tensor without the trailing 1 is accepted too);
      results keep the batch shape ``...``; computation is in float64 and results
      are returned in float64 (cast them yourself if needed).
    - ``t`` is ``None`` (clean data, ᾱ = 1), an int, or an integer
      tensor broadcastable to the batch shape (non-integer float timesteps are
      interpolated linearly in ᾱ). ``alpha_cumprod=`` may be given
      instead of ``t`` to bypass the schedule.
    - ``c`` is ``None`` (the marginal), an int, or an integer tensor broadcastable
      to the batch shape.
    """

    def __init__(
        self,
        weights: Any,
        means: Any,
        covariances: Any,
        labels: Any = None,
        num_classes: int | None = None,
        schedule: Any = None,
    ) -> None:
        w, mu, cov = _parameters(weights, means, covariances)
        lam, U = torch.linalg.eigh(cov)
        _checks.that(bool((lam > 0).all()), "covariances must be positive definite")
        lab, C = _class_labels_of(labels, w.numel(), num_classes)
        self.weights = w  # (K,)
        self.means = mu  # (K, d)
        self.covariances = cov  # (K, d, d)
        self.labels = lab  # (K,)
        self.num_classes = C
        self.dim = mu.shape[1]
        self.num_components = w.numel()
        self._eigvals = lam  # (K, d)
        self._eigvecs = U  # (K, d, d), columns are eigenvectors
        self._rot_means = torch.einsum("kji,kj->ki", U, mu)  # U_k^T mu_k, (K, d)
        # membership (K, C): True where component k belongs to class c
        self._member = torch.nn.functional.one_hot(lab, C).to(torch.bool)
        self.class_priors = torch.zeros(C, dtype=torch.float64).index_add_(0, lab, w)  # pi_c
        self.schedule = NoiseSchedule() if schedule is None else schedule  # default: 1000 linear steps
        self.alphas_cumprod = _alphas_cumprod_of(self.schedule)  # (T,) float64

    # ------------------------------------------------------------ basics
    def __repr__(self) -> str:
        return (
            f"GaussianMixture(d={self.dim}, components={self.num_components}, "
            f"classes={self.num_classes}, T={self.alphas_cumprod.numel()})"
        )

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.numel())

    def mean(self, c: int | None = None) -> torch.Tensor:
        """Exact mean of p(x_0) or p(x_0 | c), shape ``(d,)``."""
        w = self._component_weights(c)
        return (w[:, None] * self.means).sum(0)

    def covariance(self, c: int | None = None) -> torch.Tensor:
        """Exact covariance of p(x_0) or p(x_0 | c), ``(d, d)``:
        Σ_k w_k (Σ_k + μ_k μ_kᵀ) − m mᵀ."""
        w = self._component_weights(c)
        m = self.mean(c)
        second = (w[:, None, None] * (self.covariances + self.means[:, :, None] * self.means[:, None, :])).sum(0)
        return second - m[:, None] * m[None, :]

    def std(self, c: int | None = None) -> torch.Tensor:
        """Exact per-coordinate standard deviation, ``(d,)``."""
        return self.covariance(c).diagonal().sqrt()

    def _check_class_int(self, c: Any) -> int:
        """``c`` as an int class label in ``0..C-1`` (a one-element integer tensor is accepted)."""
        c = int(c) if isinstance(c, torch.Tensor) and c.numel() == 1 and not c.is_floating_point() else c
        return _checks.integer("c (a class label)", c, 0, self.num_classes - 1)

    def _component_weights(self, c: int | None) -> torch.Tensor:
        if c is None:
            return self.weights
        c = self._check_class_int(c)
        w = torch.where(self.labels == c, self.weights, torch.zeros_like(self.weights))
        return w / w.sum()

    # ------------------------------------------------------------ input handling
    def _prep_x(self, x: Any) -> tuple[torch.Tensor, tuple[int, ...], bool]:
        """``x`` -> ``(N, d)`` float64, the batch shape, and whether a trailing 1 was added."""
        _checks.floats("x", x, min_ndim=0)
        added = self.dim == 1 and (x.ndim == 0 or x.shape[-1] != 1)
        x = x[..., None] if added else x
        _checks.that(x.ndim >= 1 and x.shape[-1] == self.dim, f"x must have shape (..., {self.dim}) for this mixture, got {tuple(x.shape)}")
        batch = tuple(x.shape[:-1])
        return x.to(torch.float64).reshape(-1, self.dim), batch, added

    def alpha_bar(self, t: Any, batch: tuple[int, ...] = ()) -> torch.Tensor:
        """ᾱ_t for timesteps ``t``, flattened to ``(N,)`` for the batch shape
        ``batch``, or ``(1,)`` when one timestep is shared by the whole batch.

        ``t=None`` means clean data (ᾱ = 1). Integer ``t`` indexes
        ``alphas_cumprod``; non-integer floats are interpolated linearly.
        """
        return _alpha_bar(self.alphas_cumprod, t, batch)

    def _resolve_ab(self, t: Any, batch: tuple[int, ...], alpha_cumprod: Any) -> torch.Tensor:
        if alpha_cumprod is None:
            return self.alpha_bar(t, batch)
        _checks.that(t is None, "give either t or alpha_cumprod, not both")
        ab = _as_float64("alpha_cumprod", alpha_cumprod)
        _checks.that(bool(((ab > 0) & (ab <= 1)).all()), "alpha_cumprod must be in (0, 1]")
        return _broadcast_flat("alpha_cumprod", ab, batch)

    def _class_mask(self, c: Any, batch: tuple[int, ...]) -> torch.Tensor | None:
        """``(K, N)`` (or ``(K, 1)``) boolean mask of the components of class ``c``; None = all."""
        if c is None:
            return None
        cc = _integer_tensor("c", c, "an int or integer class labels")
        _checks.that(bool(((cc >= 0) & (cc < self.num_classes)).all()), f"c must be class labels in 0..{self.num_classes - 1}")
        cc = _broadcast_flat("c", cc, batch)
        if cc.numel() == 1:
            return self._member[:, int(cc)][:, None]
        return self._member[:, cc]  # (K, N)

    # ------------------------------------------------------------ the core computation
    def _components(self, x: torch.Tensor, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-component log densities and scores at noise level ``ab`` (eqs. M1, M2).

        The layout is component-major (samples last), so every reduction over the
        few components or coordinates is a sum of long contiguous vectors.

        Args:
            x: ``(N, d)`` float64.
            ab: ``(N,)`` or ``(1,)`` float64, ᾱ.

        Returns:
            ``logits`` ``(K, N)``: log w_k + log 𝒩(x; √ᾱ μ_k, Σ_{k,t});
            ``scores`` ``(K, d, N)``: −Σ_{k,t}⁻¹(x − √ᾱ μ_k).
        """
        U = self._eigvecs  # (K, d, d)
        ab = ab.reshape(1, 1, -1)
        y = torch.matmul(U.transpose(1, 2), x.T)  # U_k^T x, (K, d, N)
        r = y - ab.sqrt() * self._rot_means[:, :, None]  # rotated residual
        s = ab * self._eigvals[:, :, None] + (1.0 - ab)  # eigenvalues of Sigma_{k,t}, (K, d, N|1)
        z = r / s
        log_n = -0.5 * ((r * z).sum(1) + s.log().sum(1) + self.dim * _LOG_2PI)  # (K, N)
        scores = -torch.matmul(U, z)  # (K, d, N)
        return self.weights.log()[:, None] + log_n, scores

    @staticmethod
    def _masked(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return logits if mask is None else logits.masked_fill(~mask, -math.inf)

    @staticmethod
    def _softmax0(logits: torch.Tensor) -> torch.Tensor:
        """Softmax over the component axis 0 of ``(K, N)``: the responsibilities."""
        e = (logits - logits.max(0, keepdim=True).values).exp()
        return e / e.sum(0, keepdim=True)

    # ------------------------------------------------------------ public densities and scores
    def log_prob(self, x: torch.Tensor, t: Any = None, c: Any = None, *, alpha_cumprod: Any = None) -> torch.Tensor:
        """Exact log p_t(x) (``c=None``) or log p_t(x | c) (eq. M1).

        Args:
            x: ``(..., d)``; t: timesteps or ``None`` for ``t = 0`` data; c: class or ``None``.

        Returns:
            ``(...)`` float64 (differentiable in ``x``).
        """
        xf, batch, _ = self._prep_x(x)
        ab = self._resolve_ab(t, batch, alpha_cumprod)
        logits, _ = self._components(xf, ab)
        mask = self._class_mask(c, batch)
        out = torch.logsumexp(self._masked(logits, mask), dim=0)
        if mask is not None:  # divide by pi_c: the class-conditional density
            log_w = self.weights.log()[:, None].expand_as(mask)
            out = out - torch.logsumexp(self._masked(log_w, mask), dim=0)
        return out.reshape(batch)

    def _score_flat(self, xf: torch.Tensor, ab: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        logits, scores = self._components(xf, ab)
        resp = self._softmax0(self._masked(logits, mask))  # (K, N)
        return (resp[:, None, :] * scores).sum(0).T  # (N, d)

    def score(self, x: torch.Tensor, t: Any = None, c: Any = None, *, alpha_cumprod: Any = None) -> torch.Tensor:
        """Exact score ∇ₓ log p_t(x) or ∇ₓ log p_t(x | c) (eq. M2).

        Args:
            x: ``(..., d)`` x_t; t: timesteps; c: class or ``None``.

        Returns:
            same shape as ``x``, float64.
        """
        xf, batch, added = self._prep_x(x)
        ab = self._resolve_ab(t, batch, alpha_cumprod)
        out = self._score_flat(xf, ab, self._class_mask(c, batch))
        return self._reshape_like(out, batch, added)

    def _reshape_like(self, out: torch.Tensor, batch: tuple[int, ...], added: bool) -> torch.Tensor:
        out = out.reshape(*batch, self.dim)
        return out[..., 0] if added else out

    def class_log_posterior(self, x: torch.Tensor, t: Any = None, *, alpha_cumprod: Any = None) -> torch.Tensor:
        """log p_t(c | x) for every class, ``(..., C)`` (eq. M3); differentiable in ``x``."""
        xf, batch, _ = self._prep_x(x)
        ab = self._resolve_ab(t, batch, alpha_cumprod)
        logits, _ = self._components(xf, ab)
        joint = logits[:, None, :].masked_fill(~self._member[:, :, None], -math.inf)  # (K, C, N)
        log_joint = torch.logsumexp(joint, dim=0)  # log p_t(x, c), (C, N)
        out = log_joint - torch.logsumexp(log_joint, dim=0, keepdim=True)
        return out.T.reshape(*batch, self.num_classes)

    def class_posterior(self, x: torch.Tensor, t: Any = None, *, alpha_cumprod: Any = None) -> torch.Tensor:
        """The exact (noise-robust) classifier p_t(c | x), ``(..., C)``, rows sum to 1 (eq. M3)."""
        return self.class_log_posterior(x, t, alpha_cumprod=alpha_cumprod).exp()

    def log_posterior_grad(self, x: torch.Tensor, t: Any, c: Any, *, alpha_cumprod: Any = None) -> torch.Tensor:
        """∇ₓ log p_t(c | x) = ∇ₓ log p_t(x | c) − ∇ₓ log p_t(x)
        (eq. M3), the classifier-guidance gradient of the exact classifier; same shape as ``x``."""
        _checks.that(c is not None, "c must be a class label (or tensor of labels), got None")
        xf, batch, added = self._prep_x(x)
        ab = self._resolve_ab(t, batch, alpha_cumprod)
        logits, scores = self._components(xf, ab)
        r_all = self._softmax0(logits)
        r_c = self._softmax0(self._masked(logits, self._class_mask(c, batch)))
        out = ((r_c - r_all)[:, None, :] * scores).sum(0).T
        return self._reshape_like(out, batch, added)

    def eps(self, x: torch.Tensor, t: Any, c: Any = None, *, alpha_cumprod: Any = None) -> torch.Tensor:
        """The exact noise prediction ε*(x_t, t[, c]) = −√(1 − ᾱ_t)
        ∇ log p_t(x_t [| c]) (eq. M4), the minimiser of the denoising loss
        𝔼‖ε − ε̂(x_t)‖²; same shape as ``x``, float64."""
        xf, batch, added = self._prep_x(x)
        ab = self._resolve_ab(t, batch, alpha_cumprod)
        sc = self._score_flat(xf, ab, self._class_mask(c, batch))
        out = -(1.0 - ab).sqrt().reshape(-1, 1) * sc
        return self._reshape_like(out, batch, added)

    def posterior_mean_x0(self, x: torch.Tensor, t: Any, c: Any = None, *, alpha_cumprod: Any = None) -> torch.Tensor:
        """Tweedie's formula (eq. M5): 𝔼[x_0 | x_t(, c)] =
        (x_t + (1 − ᾱ_t) ∇ log p_t(x_t(| c))) / √ᾱ_t; same shape as ``x``."""
        xf, batch, added = self._prep_x(x)
        ab = self._resolve_ab(t, batch, alpha_cumprod)
        sc = self._score_flat(xf, ab, self._class_mask(c, batch))
        ab = ab.reshape(-1, 1)
        out = (xf + (1.0 - ab) * sc) / ab.sqrt()
        return self._reshape_like(out, batch, added)

    # ------------------------------------------------------------ sampling at t = 0
    def sample(self, n: int, c: Any = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact samples of p(x_0) or p(x_0 | c), shape ``(n, d)`` float64.

        Picks a component by its (class-restricted) weight, then
        x_0 = μ_k + U_k diag(√λ_k) z, z ~ 𝒩(0, I).
        """
        return self.sample_with_components(n, c, generator)[0]

    def sample_with_components(
        self, n: int, c: Any = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`sample` but also returns the component index of each sample, ``(n,)``."""
        n = _checks.integer("n", n, 1)
        w = self._component_weights(c)
        k = torch.multinomial(w, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        root = self._eigvecs * self._eigvals.sqrt()[:, None, :]  # U diag(sqrt(lam)), (K, d, d)
        return self.means[k] + torch.einsum("nij,nj->ni", root[k], z), k

    def nearest_component(self, x: torch.Tensor, c: Any = None) -> torch.Tensor:
        """Index of the most responsible component at ``t = 0`` (within class ``c`` if given), ``(...)``."""
        xf, batch, _ = self._prep_x(x)
        logits, _ = self._components(xf, torch.ones(1, dtype=torch.float64))
        return self._masked(logits, self._class_mask(c, batch)).argmax(0).reshape(batch)

    # ------------------------------------------------------------ conditioning for the oracle
    @property
    def context_dim(self) -> int:
        """``C + 1``: one slot per class plus the last slot for "no condition"."""
        return self.num_classes + 1

    @property
    def null_index(self) -> int:
        return self.num_classes

    def condition_context(self, labels: Any, batch: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The oracle's context tensor ``(B, 1, C + 1)``: one-hot of the class, or of the
        last ("no condition") slot when ``labels`` is ``None`` -- the analogue of the
        encoded empty prompt.

        Args:
            labels: ``None`` (null condition), an int, or ``(B,)`` integer labels.
            batch: ``B``; required for ``None`` or an int, checked against a tensor.
            dtype: of the result (float32 by default, like text embeddings).
        """
        if labels is None or isinstance(labels, int) and not isinstance(labels, bool):
            _checks.that(batch is not None, "batch must be given when labels is None or an int")
            batch = _checks.integer("batch", batch, 1)
            idx = self.null_index if labels is None else self._check_class_int(labels)
            idx = torch.full((batch,), idx, dtype=torch.long)
        else:
            idx = _integer_tensor("labels", labels, "integer class labels").reshape(-1)
            _checks.that(batch is None or idx.numel() == batch, f"labels has {idx.numel()} entries but batch={batch}")
            _checks.that(bool(((idx >= 0) & (idx < self.num_classes)).all()), f"labels must be in 0..{self.num_classes - 1} (None: no condition)")
        return torch.nn.functional.one_hot(idx, self.context_dim).to(dtype)[:, None, :]

    def decode_context(self, context: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`condition_context`: ``(B,)`` labels, with ``-1`` for the null slot."""
        _checks.tensor("context", context)
        shape = tuple(context.shape)  # (B, N, C + 1): one-hot over the classes and the null slot
        _checks.that(len(shape) == 3 and shape[-1] == self.context_dim, f"context must have shape (B, N, {self.context_dim}), got {shape}")
        row = context[:, 0, :].detach().cpu()
        if not row.is_floating_point():
            row = row.to(torch.float32)
        # One-hot <=> entries >= 0 and, per row, sum x = sum x² = 1 (x in [0, 1] has x² <= x,
        # with equality only at 0 and 1). Matrix-vector products keep it fast for large B.
        ones = torch.ones(self.context_dim, dtype=row.dtype)
        one_hot = not row.numel() or (bool(row.min() >= 0) and bool(((row @ ones) == 1).all())
                                      and bool((((row * row) @ ones) == 1).all()))
        _checks.that(one_hot, "context rows must be one-hot (see GaussianMixture.condition_context)")
        idx = (row @ torch.arange(self.context_dim, dtype=row.dtype)).round().long()
        return torch.where(idx == self.null_index, torch.full_like(idx, -1), idx)

    def sample_noised(
        self, n: int, t: int, c: Any = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``n`` exact samples of p_t(x) (or p_t(x | c)):
        x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, ``(n, d)`` float64.

        Passing these as the sampler's ``latents`` starts it from the *exact* p_T
        instead of 𝒩(0, I) (they differ by √ᾱ_T μ,
        about 0.6% of the means for the linear schedule).
        """
        ab = _alpha_bar(self.alphas_cumprod, t, ())  # checks t
        x0 = self.sample(n, c, generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


# ----------------------------------------------------------------------------
# the oracle denoiser and the exact classifier
# ----------------------------------------------------------------------------


class OracleDenoiser(nn.Module):
    """The exact ε-prediction of a :class:`GaussianMixture`, with the U-Net's call signature.

    Introduced in notebook 05. ``oracle(x_t, t, context) -> eps`` follows the
    course's denoiser protocol (docs/CONTRIBUTING.md), so
    :class:`~tutorial_lib.sampler.ConditionalDDIMSampler` runs on it unchanged:

    - ``x_t``: ``(B, d)`` float (``d`` = the mixture's dimension; ``(B,)`` is accepted in 1-D);
    - ``t``: ``(B,)`` training timesteps (long, or float: interpolated), or an int;
    - ``context``: ``(B, N, C + 1)`` **one-hot** rows (only token 0 is read), slot ``c``
      for class ``c`` and the *last* slot ``C`` for "no condition" -- the analogue of
      the encoded empty prompt. Build it with :meth:`GaussianMixture.condition_context`
      (``labels=None`` gives the null condition to pass as ``negative_prompt_embeds``).
    - returns ε*(x_t, t, c) = −√(1 − ᾱ_t) ∇ log p_t(x_t | c)
      (the marginal score for the null slot), in ``x_t``'s dtype and shape.

    Attributes read by the sampler: ``prediction_type = "epsilon"`` and
    ``context_dim = C + 1``. ``num_calls`` counts forward calls and ``num_rows``
    the rows evaluated (network function evaluations).

    Args:
        mixture: the :class:`GaussianMixture`.
        schedule: the schedule mapping ``t`` to ᾱ_t; default the mixture's.
    """

    prediction_type = "epsilon"

    def __init__(self, mixture: GaussianMixture, schedule: Any = None) -> None:
        super().__init__()
        _checks.instance("mixture", mixture, GaussianMixture, "a GaussianMixture")
        self.mixture = mixture
        self.schedule = mixture.schedule if schedule is None else schedule
        self.register_buffer("alphas_cumprod", _alphas_cumprod_of(self.schedule), persistent=False)
        self.context_dim = mixture.context_dim
        # plain dict: updating it every call avoids nn.Module.__setattr__'s overhead
        self._state: dict[str, Any] = {"calls": 0, "rows": 0, "context": None}

    @property
    def num_calls(self) -> int:
        """Forward calls so far (network function evaluations, NFE)."""
        return self._state["calls"]

    @property
    def num_rows(self) -> int:
        """Rows evaluated so far (a doubled CFG batch counts twice)."""
        return self._state["rows"]

    def forward(self, x_t: torch.Tensor, t: Any, context: torch.Tensor) -> torch.Tensor:
        m = self.mixture
        xf, batch, added = m._prep_x(x_t)
        _checks.that(len(batch) == 1, f"x_t must have shape (B, {m.dim}), got {tuple(x_t.shape)}")
        B = batch[0]
        state = self._state
        cache = state["context"]
        if cache is not None and cache[0] is context and cache[1] == context._version:
            labels = cache[2]  # the same context tensor as last call (e.g. every DDPM step)
        else:
            labels = m.decode_context(context)  # (B',), -1 = null
            state["context"] = (context, context._version, labels)
        _checks.that(labels.shape[0] == B, f"context must have batch size {B} (x_t's), got {labels.shape[0]}")
        ab = _alpha_bar(self.alphas_cumprod, t, batch)  # checks t: in range, and of shape (B,) or shared
        xf = xf.detach().cpu()
        null = labels < 0
        mask = None if bool(null.all()) else m._member[:, labels.clamp(min=0)] | null[None, :]  # (K, B)
        h = B // 2
        if B % 2 == 0 and ab.numel() == 1 and mask is not None and torch.equal(xf[:h], xf[h:]):
            # The CFG "doubled batch" [x, x] with [uncond, cond] contexts: the components
            # do not depend on the condition, so evaluate them once (same result, half the work).
            logits, scores = m._components(xf[:h], ab)
            halves = []
            for part in (mask[:, :h], mask[:, h:]):
                resp = m._softmax0(m._masked(logits, part))
                halves.append((resp[:, None, :] * scores).sum(0).T)
            score = torch.cat(halves)
        else:
            score = m._score_flat(xf, ab, mask)
        eps = -(1.0 - ab).sqrt().reshape(-1, 1) * score
        state["calls"] += 1
        state["rows"] += B
        return m._reshape_like(eps, batch, added).to(device=x_t.device, dtype=x_t.dtype)


class ExactClassifier(nn.Module):
    """The exact noise-robust classifier of a mixture, ``classifier(x_t, t) -> logits (B, C)``.

    Introduced in notebook 05. The logits are log p_t(c | x_t) (already
    normalised, so ``log_softmax`` leaves them unchanged); differentiable in ``x_t``,
    so the sampler's ``classifier=`` option (autograd of log p_t(y | x_t))
    gives exactly :meth:`GaussianMixture.log_posterior_grad`.
    """

    def __init__(self, mixture: GaussianMixture, schedule: Any = None) -> None:
        super().__init__()
        _checks.instance("mixture", mixture, GaussianMixture, "a GaussianMixture")
        self.mixture = mixture
        self.register_buffer(
            "alphas_cumprod",
            _alphas_cumprod_of(mixture.schedule if schedule is None else schedule),
            persistent=False,
        )

    def forward(self, x_t: torch.Tensor, t: Any) -> torch.Tensor:
        m = self.mixture
        _, batch, _ = m._prep_x(x_t)
        ab = _alpha_bar(self.alphas_cumprod, t, batch)
        return m.class_log_posterior(x_t, alpha_cumprod=ab if ab.numel() == 1 else ab.reshape(batch)).to(x_t.dtype)


# ----------------------------------------------------------------------------
# ready-made mixtures for the notebooks
# ----------------------------------------------------------------------------


def example_mixture_1d(schedule: Any = None) -> GaussianMixture:
    """Two overlapping classes on a line: ½𝒩(−1, 0.5²) (class 0) and
    ½𝒩(+1, 0.5²) (class 1). The default of
    :func:`~tutorial_lib.mixture_experiments.guidance_sweep_table`."""
    return GaussianMixture([0.5, 0.5], [-1.0, 1.0], [0.25, 0.25], labels=[0, 1], schedule=schedule)


def example_mixture_2d(schedule: Any = None) -> GaussianMixture:
    """A 2-D mixture for plots (notebook 05): class 0 is one elongated Gaussian, class 1 has two
    components, one of them close to class 0 (full covariances)."""
    return GaussianMixture(
        weights=[0.4, 0.35, 0.25],
        means=[[-1.5, 0.0], [1.5, 1.0], [0.5, -1.5]],
        covariances=[[[0.30, 0.15], [0.15, 0.20]], [[0.15, 0.0], [0.0, 0.30]], [[0.25, -0.10], [-0.10, 0.15]]],
        labels=[0, 1, 1],
        schedule=schedule,
    )


def interval_demo_mixture(schedule: Any = None) -> GaussianMixture:
    """The guidance-interval example (notebook 06), 1-D, component std 0.2:

    - class 0: a major mode at -2.5 (weight 0.3) and a minor mode at +0.5 (weight 0.2),
      so within the class the modes have proportions 0.6 : 0.4;
    - class 1: one mode at +2.5 (weight 0.5).

    At high noise the whole right half looks like class 1 (it holds 0.5 of the mass against
    class 0's 0.2), so ∇ log p_t(0 | x) points left everywhere there and strong
    guidance pushes the trajectories that would have reached +0.5 to -2.5: the minor mode
    is dropped. Below σ_t ≈ 1 the modes at +0.5 and +2.5 are resolved and
    guidance no longer hurts the minor mode.
    """
    return GaussianMixture([0.3, 0.2, 0.5], [-2.5, 0.5, 2.5], [0.04, 0.04, 0.04], labels=[0, 0, 1], schedule=schedule)

