r"""Analytic Gaussian mixtures: exact scores, an oracle denoiser, and what guidance samples.

Introduced in notebook 05 (classifier guidance) and used again in notebook 06
(classifier-free guidance). A Gaussian mixture is the one data distribution for
which every quantity of a diffusion model is known in closed form, so guidance
can be *proved* numerically instead of asserted.

The data are :math:`x_0 \in \mathbb{R}^d` (``d`` = 1 or 2) drawn from

.. math::  p(x_0) = \sum_{k=1}^{K} w_k\, \mathcal{N}(x_0; \mu_k, \Sigma_k),

and each component ``k`` carries a class label :math:`c_k` (several components
may share a class). The class prior is :math:`\pi_c = \sum_{k: c_k = c} w_k`
and the class-conditional density is the sub-mixture
:math:`p(x_0 \mid c) = \sum_{k: c_k = c} (w_k / \pi_c)\, \mathcal{N}(x_0; \mu_k, \Sigma_k)`.

The forward process of the course's :class:`~tutorial_lib.schedule.NoiseSchedule`
is :math:`x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \varepsilon`,
:math:`\varepsilon \sim \mathcal{N}(0, I)`. A linear map of a Gaussian plus an
independent Gaussian is Gaussian, so the noised density is again a mixture
with the *same* weights (eq. M1):

.. math::  p_t(x) = \sum_k w_k\, \mathcal{N}\big(x;\ \sqrt{\bar\alpha_t}\,\mu_k,\
           \Sigma_{k,t}\big), \qquad \Sigma_{k,t} = \bar\alpha_t \Sigma_k + (1-\bar\alpha_t) I.

Everything else follows in closed form (``r_k(x)`` are the responsibilities,
the softmax over ``k`` of :math:`\log w_k + \log \mathcal{N}_k(x)`):

- score (M2): :math:`\nabla_x \log p_t(x) = -\sum_k r_k(x)\, \Sigma_{k,t}^{-1}(x - \sqrt{\bar\alpha_t}\mu_k)`,
  and the class-conditional score is the same sum over the components of class ``c``;
- class posterior (M3): :math:`p_t(c \mid x) = \sum_{k: c_k = c} r_k(x)`, and
  :math:`\nabla_x \log p_t(c \mid x) = \nabla_x \log p_t(x \mid c) - \nabla_x \log p_t(x)` (Bayes);
- noise prediction (M4): :math:`\varepsilon(x, t) = -\sqrt{1-\bar\alpha_t}\, \nabla_x \log p_t(x)`,
  the minimiser of the denoising loss;
- Tweedie's posterior mean (M5):
  :math:`\mathbb{E}[x_0 \mid x_t] = \big(x_t + (1-\bar\alpha_t)\nabla_x \log p_t(x_t)\big) / \sqrt{\bar\alpha_t}`.

Implementation note: all :math:`\Sigma_{k,t}` share the eigenvectors of
:math:`\Sigma_k` (:math:`\Sigma_k = U_k \operatorname{diag}(\lambda_k) U_k^\top`
gives :math:`\Sigma_{k,t} = U_k \operatorname{diag}(\bar\alpha_t\lambda_k + 1 - \bar\alpha_t) U_k^\top`),
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
- :func:`ddpm_sample` ancestral DDPM sampling (all ``T`` steps) with CFG -- the same
  as the course sampler with ``eta=1`` and ``num_inference_steps=T`` (tested);
- :func:`sample_guided` CFG samples of a mixture by DDIM (the course sampler, ``eta=0``)
  or DDPM;
- :func:`tilted_target` the distribution :math:`p(x\mid c)^\gamma p(x)^{1-\gamma}`
  that CFG is often *said* to sample (exact where a closed form exists,
  otherwise on a grid);
- :func:`guidance_sweep_table` and :func:`guidance_interval_demo`, the two
  "show" functions of notebook 06.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn as nn

__all__ = [
    "GaussianMixture",
    "OracleDenoiser",
    "ExactClassifier",
    "TiltedTarget",
    "tilted_target",
    "ddpm_sample",
    "sample_guided",
    "example_mixture_1d",
    "example_mixture_2d",
    "interval_demo_mixture",
    "GuidanceSweep",
    "guidance_sweep_table",
    "IntervalDemo",
    "guidance_interval_demo",
]

_LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------
# small validation helpers
# ----------------------------------------------------------------------------


def _as_float64(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real tensor, got dtype {value.dtype}")
        t = value.detach().to(torch.float64)
    else:
        try:
            t = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must be a tensor or a sequence of numbers") from exc
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite")
    return t


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _alphas_cumprod_of(schedule: Any) -> torch.Tensor:
    """``schedule.alphas_cumprod`` as a float64 tensor ``(T,)``; accepts any object that has it."""
    if schedule is None:
        from .schedule import NoiseSchedule  # the course default: 1000 linear steps

        schedule = NoiseSchedule()
    ac = getattr(schedule, "alphas_cumprod", None)
    if ac is None:
        raise TypeError(
            "schedule must have an `alphas_cumprod` attribute (e.g. a NoiseSchedule), "
            f"got {type(schedule).__name__}"
        )
    ac = torch.as_tensor(ac).detach().to(torch.float64).reshape(-1)
    if ac.numel() < 1 or not ((ac > 0) & (ac <= 1)).all():
        raise ValueError("schedule.alphas_cumprod must be a non-empty tensor with values in (0, 1]")
    return ac


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
    if isinstance(t, bool):
        raise TypeError("t must be an int or a tensor of timesteps, got bool")
    tt = torch.as_tensor(t)
    if tt.dtype == torch.bool or tt.is_complex():
        raise TypeError(f"t must be integer or float timesteps, got dtype {tt.dtype}")
    tt = _broadcast_flat("t", tt.detach().cpu(), batch)
    lo_t, hi_t = torch.aminmax(tt)
    if not tt.is_floating_point():  # the common case: integer training timesteps
        if int(lo_t) < 0 or int(hi_t) > T - 1:
            raise ValueError(f"t must be timesteps in [0, {T - 1}], got values in [{int(lo_t)}, {int(hi_t)}]")
        if int(lo_t) == int(hi_t):  # one shared timestep (the sampler's case): broadcast later
            return alphas_cumprod[int(lo_t)].reshape(1)
        return alphas_cumprod[tt]
    tt = tt.to(torch.float64)
    if not bool(torch.isfinite(tt).all()) or float(lo_t) < 0 or float(hi_t) > T - 1:
        raise ValueError(f"t must be finite timesteps in [0, {T - 1}]")
    if float(lo_t) == float(hi_t):
        tt = tt[:1]
    lo = tt.floor().long()
    hi = torch.clamp(lo + 1, max=T - 1)
    frac = tt - lo.to(torch.float64)
    return alphas_cumprod[lo] * (1 - frac) + alphas_cumprod[hi] * frac


# ----------------------------------------------------------------------------
# the mixture
# ----------------------------------------------------------------------------


class GaussianMixture:
    r"""A Gaussian mixture in 1-D or 2-D whose components carry class labels.

    Introduced in notebook 05. See the module docstring for equations M1-M5.

    Args:
        weights: ``(K,)`` positive component weights :math:`w_k` (normalised to sum to 1).
        means: ``(K, d)`` component means :math:`\mu_k`; in 1-D ``(K,)`` is accepted.
        covariances: the :math:`\Sigma_k`, one of ``(K, d, d)`` full (symmetric positive
            definite), ``(K, d)`` diagonal variances, or ``(K,)`` one isotropic variance
            per component (in 1-D, ``(K,)`` is simply the variances).
        labels: ``(K,)`` integer class of each component, in ``0..C-1``; every class
            must own at least one component. Default: each component is its own class.
        num_classes: ``C``; default ``max(labels) + 1``.
        schedule: anything with ``alphas_cumprod`` (``(T,)``, e.g. a
            :class:`~tutorial_lib.schedule.NoiseSchedule`) that maps a training timestep
            ``t`` to :math:`\bar\alpha_t`; default ``NoiseSchedule()``.

    Conventions for every method:

    - ``x`` is ``(..., d)`` (in 1-D a tensor without the trailing 1 is accepted too);
      results keep the batch shape ``...``; computation is in float64 and results
      are returned in float64 (cast them yourself if needed).
    - ``t`` is ``None`` (clean data, :math:`\bar\alpha = 1`), an int, or an integer
      tensor broadcastable to the batch shape (non-integer float timesteps are
      interpolated linearly in :math:`\bar\alpha`). ``alpha_cumprod=`` may be given
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
        w = _as_float64("weights", weights).reshape(-1)
        K = w.numel()
        if K < 1:
            raise ValueError("weights must have at least one component")
        if (w <= 0).any():
            raise ValueError("weights must all be positive")
        w = w / w.sum()

        mu = _as_float64("means", means)
        if mu.ndim == 1:
            mu = mu[:, None]
        if mu.ndim != 2 or mu.shape[0] != K or mu.shape[1] not in (1, 2):
            raise ValueError(
                f"means must have shape (K, d) with K={K} and d in {{1, 2}} (or (K,) in 1-D), "
                f"got {tuple(_as_float64('means', means).shape)}"
            )
        d = mu.shape[1]

        cov = _as_float64("covariances", covariances)
        if cov.ndim == 1 and cov.shape[0] == K:  # isotropic
            cov = cov[:, None, None] * torch.eye(d, dtype=torch.float64)
        elif cov.ndim == 2 and cov.shape == (K, d):  # diagonal
            cov = torch.diag_embed(cov)
        elif cov.ndim == 3 and cov.shape == (K, d, d):
            pass
        else:
            raise ValueError(
                f"covariances must have shape ({K}, {d}, {d}) (full), ({K}, {d}) (diagonal) "
                f"or ({K},) (isotropic), got {tuple(cov.shape)}"
            )
        if not torch.allclose(cov, cov.transpose(-1, -2), atol=1e-10, rtol=1e-8):
            raise ValueError("covariances must be symmetric")
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        lam, U = torch.linalg.eigh(cov)
        if (lam <= 0).any():
            raise ValueError("covariances must be positive definite")

        if labels is None:
            lab = torch.arange(K)
        else:
            lab = torch.as_tensor(labels)
            if lab.is_floating_point() or lab.dtype == torch.bool or lab.is_complex():
                if not (lab.is_floating_point() and torch.equal(lab, lab.round())):
                    raise TypeError(f"labels must be integers, got dtype {lab.dtype}")
            lab = lab.to(torch.long).reshape(-1)
            if lab.numel() != K:
                raise ValueError(f"labels must have one entry per component (K={K}), got {lab.numel()}")
            if (lab < 0).any():
                raise ValueError("labels must be non-negative")
        C = int(lab.max()) + 1 if num_classes is None else _check_int("num_classes", num_classes)
        if int(lab.max()) >= C:
            raise ValueError(f"labels must be < num_classes={C}, got max {int(lab.max())}")
        counts = torch.bincount(lab, minlength=C)
        if (counts == 0).any():
            missing = torch.nonzero(counts == 0).reshape(-1).tolist()
            raise ValueError(f"every class needs at least one component; classes {missing} have none")

        self.weights = w  # (K,)
        self.means = mu  # (K, d)
        self.covariances = cov  # (K, d, d)
        self.labels = lab  # (K,)
        self.num_classes = C
        self.dim = d
        self.num_components = K
        self._eigvals = lam  # (K, d)
        self._eigvecs = U  # (K, d, d), columns are eigenvectors
        self._rot_means = torch.einsum("kji,kj->ki", U, mu)  # U_k^T mu_k, (K, d)
        # membership (K, C): True where component k belongs to class c
        self._member = torch.nn.functional.one_hot(lab, C).to(torch.bool)
        self.class_priors = torch.zeros(C, dtype=torch.float64).index_add_(0, lab, w)  # pi_c
        if schedule is None:
            from .schedule import NoiseSchedule

            schedule = NoiseSchedule()  # the course default: 1000 linear steps
        self.alphas_cumprod = _alphas_cumprod_of(schedule)  # (T,) float64
        self.schedule = schedule

    # ------------------------------------------------------------ basics
    def __repr__(self) -> str:
        return (
            f"GaussianMixture(d={self.dim}, components={self.num_components}, "
            f"classes={self.num_classes}, T={self.alphas_cumprod.numel()})"
        )

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.numel())

    def with_schedule(self, schedule: Any) -> GaussianMixture:
        """The same mixture, with ``t -> alpha_bar_t`` taken from another schedule."""
        return GaussianMixture(
            self.weights, self.means, self.covariances, self.labels, self.num_classes, schedule
        )

    def class_mixture(self, c: int) -> GaussianMixture:
        r""":math:`p(x_0 \mid c)` as a mixture of its own (its components, all with label 0)."""
        c = self._check_class_int(c)
        idx = torch.nonzero(self.labels == c).reshape(-1)
        return GaussianMixture(
            self.weights[idx], self.means[idx], self.covariances[idx],
            torch.zeros(idx.numel(), dtype=torch.long), None, self.schedule,
        )

    def mean(self, c: int | None = None) -> torch.Tensor:
        """Exact mean of :math:`p(x_0)` or :math:`p(x_0 \\mid c)`, shape ``(d,)``."""
        w = self._component_weights(c)
        return (w[:, None] * self.means).sum(0)

    def covariance(self, c: int | None = None) -> torch.Tensor:
        r"""Exact covariance of :math:`p(x_0)` or :math:`p(x_0 \mid c)`, ``(d, d)``:
        :math:`\sum_k w_k (\Sigma_k + \mu_k\mu_k^\top) - m m^\top`."""
        w = self._component_weights(c)
        m = self.mean(c)
        second = (w[:, None, None] * (self.covariances + self.means[:, :, None] * self.means[:, None, :])).sum(0)
        return second - m[:, None] * m[None, :]

    def std(self, c: int | None = None) -> torch.Tensor:
        """Exact per-coordinate standard deviation, ``(d,)``."""
        return self.covariance(c).diagonal().sqrt()

    def _check_class_int(self, c: Any) -> int:
        if isinstance(c, torch.Tensor) and c.numel() == 1 and not c.is_floating_point():
            c = int(c)
        if isinstance(c, bool) or not isinstance(c, int):
            raise TypeError(f"c must be an int class label, got {type(c).__name__}")
        if not 0 <= c < self.num_classes:
            raise ValueError(f"c must be in 0..{self.num_classes - 1}, got {c}")
        return c

    def _component_weights(self, c: int | None) -> torch.Tensor:
        if c is None:
            return self.weights
        c = self._check_class_int(c)
        w = torch.where(self.labels == c, self.weights, torch.zeros_like(self.weights))
        return w / w.sum()

    # ------------------------------------------------------------ input handling
    def _prep_x(self, x: Any) -> tuple[torch.Tensor, tuple[int, ...], bool]:
        """``x`` -> ``(N, d)`` float64, the batch shape, and whether a trailing 1 was added."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.is_complex() or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        added = False
        if self.dim == 1 and (x.ndim == 0 or x.shape[-1] != 1):
            x = x[..., None]
            added = True
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(
                f"x must have shape (..., {self.dim}) for this {self.dim}-D mixture, got {tuple(x.shape)}"
            )
        batch = tuple(x.shape[:-1])
        return x.to(torch.float64).reshape(-1, self.dim), batch, added

    def alpha_bar(self, t: Any, batch: tuple[int, ...] = ()) -> torch.Tensor:
        r""":math:`\bar\alpha_t` for timesteps ``t``, flattened to ``(N,)`` for the batch shape
        ``batch``, or ``(1,)`` when one timestep is shared by the whole batch.

        ``t=None`` means clean data (:math:`\bar\alpha = 1`). Integer ``t`` indexes
        ``alphas_cumprod``; non-integer floats are interpolated linearly.
        """
        return _alpha_bar(self.alphas_cumprod, t, batch)

    def _resolve_ab(self, t: Any, batch: tuple[int, ...], alpha_cumprod: Any) -> torch.Tensor:
        if alpha_cumprod is None:
            return self.alpha_bar(t, batch)
        if t is not None:
            raise ValueError("give either t or alpha_cumprod, not both")
        ab = _as_float64("alpha_cumprod", alpha_cumprod)
        if ((ab <= 0) | (ab > 1)).any():
            raise ValueError("alpha_cumprod must be in (0, 1]")
        return _broadcast_flat("alpha_cumprod", ab, batch)

    def _class_mask(self, c: Any, batch: tuple[int, ...]) -> torch.Tensor | None:
        """``(K, N)`` (or ``(K, 1)``) boolean mask of the components of class ``c``; None = all."""
        if c is None:
            return None
        if isinstance(c, bool):
            raise TypeError("c must be an int or an integer tensor of class labels, got bool")
        cc = torch.as_tensor(c)
        if cc.is_floating_point() or cc.is_complex() or cc.dtype == torch.bool:
            raise TypeError(f"c must be integer class labels, got dtype {cc.dtype}")
        cc = cc.to(device="cpu", dtype=torch.long)
        if (cc < 0).any() or (cc >= self.num_classes).any():
            raise ValueError(f"c must be class labels in 0..{self.num_classes - 1}")
        cc = _broadcast_flat("c", cc, batch)
        if cc.numel() == 1:
            return self._member[:, int(cc)][:, None]
        return self._member[:, cc]  # (K, N)

    # ------------------------------------------------------------ the core computation
    def _components(self, x: torch.Tensor, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Per-component log densities and scores at noise level ``ab`` (eqs. M1, M2).

        The layout is component-major (samples last), so every reduction over the
        few components or coordinates is a sum of long contiguous vectors.

        Args:
            x: ``(N, d)`` float64.
            ab: ``(N,)`` or ``(1,)`` float64, :math:`\bar\alpha`.

        Returns:
            ``logits`` ``(K, N)``: :math:`\log w_k + \log\mathcal{N}(x; \sqrt{\bar\alpha}\mu_k, \Sigma_{k,t})`;
            ``scores`` ``(K, d, N)``: :math:`-\Sigma_{k,t}^{-1}(x - \sqrt{\bar\alpha}\mu_k)`.
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
        r"""Exact :math:`\log p_t(x)` (``c=None``) or :math:`\log p_t(x \mid c)` (eq. M1).

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
        r"""Exact score :math:`\nabla_x \log p_t(x)` or :math:`\nabla_x \log p_t(x \mid c)` (eq. M2).

        Args:
            x: ``(..., d)`` :math:`x_t`; t: timesteps; c: class or ``None``.

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
        r""":math:`\log p_t(c \mid x)` for every class, ``(..., C)`` (eq. M3); differentiable in ``x``."""
        xf, batch, _ = self._prep_x(x)
        ab = self._resolve_ab(t, batch, alpha_cumprod)
        logits, _ = self._components(xf, ab)
        joint = logits[:, None, :].masked_fill(~self._member[:, :, None], -math.inf)  # (K, C, N)
        log_joint = torch.logsumexp(joint, dim=0)  # log p_t(x, c), (C, N)
        out = log_joint - torch.logsumexp(log_joint, dim=0, keepdim=True)
        return out.T.reshape(*batch, self.num_classes)

    def class_posterior(self, x: torch.Tensor, t: Any = None, *, alpha_cumprod: Any = None) -> torch.Tensor:
        r"""The exact (noise-robust) classifier :math:`p_t(c \mid x)`, ``(..., C)``, rows sum to 1 (eq. M3)."""
        return self.class_log_posterior(x, t, alpha_cumprod=alpha_cumprod).exp()

    def log_posterior_grad(self, x: torch.Tensor, t: Any, c: Any, *, alpha_cumprod: Any = None) -> torch.Tensor:
        r""":math:`\nabla_x \log p_t(c \mid x) = \nabla_x \log p_t(x \mid c) - \nabla_x \log p_t(x)`
        (eq. M3), the classifier-guidance gradient of the exact classifier; same shape as ``x``."""
        if c is None:
            raise ValueError("c must be a class label (or tensor of labels), got None")
        xf, batch, added = self._prep_x(x)
        ab = self._resolve_ab(t, batch, alpha_cumprod)
        logits, scores = self._components(xf, ab)
        r_all = self._softmax0(logits)
        r_c = self._softmax0(self._masked(logits, self._class_mask(c, batch)))
        out = ((r_c - r_all)[:, None, :] * scores).sum(0).T
        return self._reshape_like(out, batch, added)

    def eps(self, x: torch.Tensor, t: Any, c: Any = None, *, alpha_cumprod: Any = None) -> torch.Tensor:
        r"""The exact noise prediction :math:`\varepsilon^*(x_t, t[, c]) = -\sqrt{1-\bar\alpha_t}\,
        \nabla \log p_t(x_t[\mid c])` (eq. M4), the minimiser of the denoising loss
        :math:`\mathbb{E}\|\varepsilon - \hat\varepsilon(x_t)\|^2`; same shape as ``x``, float64."""
        xf, batch, added = self._prep_x(x)
        ab = self._resolve_ab(t, batch, alpha_cumprod)
        sc = self._score_flat(xf, ab, self._class_mask(c, batch))
        out = -(1.0 - ab).sqrt().reshape(-1, 1) * sc
        return self._reshape_like(out, batch, added)

    def posterior_mean_x0(self, x: torch.Tensor, t: Any, c: Any = None, *, alpha_cumprod: Any = None) -> torch.Tensor:
        r"""Tweedie's formula (eq. M5): :math:`\mathbb{E}[x_0 \mid x_t(, c)] =
        (x_t + (1-\bar\alpha_t)\nabla\log p_t(x_t(\mid c))) / \sqrt{\bar\alpha_t}`; same shape as ``x``."""
        xf, batch, added = self._prep_x(x)
        ab = self._resolve_ab(t, batch, alpha_cumprod)
        sc = self._score_flat(xf, ab, self._class_mask(c, batch))
        ab = ab.reshape(-1, 1)
        out = (xf + (1.0 - ab) * sc) / ab.sqrt()
        return self._reshape_like(out, batch, added)

    # ------------------------------------------------------------ sampling at t = 0
    def sample(self, n: int, c: Any = None, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""``n`` exact samples of :math:`p(x_0)` or :math:`p(x_0 \mid c)`, shape ``(n, d)`` float64.

        Picks a component by its (class-restricted) weight, then
        :math:`x_0 = \mu_k + U_k \operatorname{diag}(\sqrt{\lambda_k})\, z`, :math:`z \sim \mathcal{N}(0, I)`.
        """
        return self.sample_with_components(n, c, generator)[0]

    def sample_with_components(
        self, n: int, c: Any = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`sample` but also returns the component index of each sample, ``(n,)``."""
        n = _check_int("n", n)
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
            if batch is None:
                raise ValueError("batch must be given when labels is None or an int")
            batch = _check_int("batch", batch)
            idx = self.null_index if labels is None else self._check_class_int(labels)
            idx = torch.full((batch,), idx, dtype=torch.long)
        else:
            idx = torch.as_tensor(labels)
            if idx.is_floating_point() or idx.dtype == torch.bool or idx.is_complex():
                raise TypeError(f"labels must be integer class labels, got dtype {idx.dtype}")
            idx = idx.to(torch.long).reshape(-1)
            if batch is not None and idx.numel() != batch:
                raise ValueError(f"labels has {idx.numel()} entries but batch={batch}")
            if (idx < 0).any() or (idx >= self.num_classes).any():
                raise ValueError(f"labels must be in 0..{self.num_classes - 1} (use None for the null condition)")
        return torch.nn.functional.one_hot(idx, self.context_dim).to(dtype)[:, None, :]

    def decode_context(self, context: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`condition_context`: ``(B,)`` labels, with ``-1`` for the null slot."""
        if not isinstance(context, torch.Tensor):
            raise TypeError(f"context must be a torch.Tensor, got {type(context).__name__}")
        if context.ndim != 3 or context.shape[-1] != self.context_dim:
            raise ValueError(
                f"context must have shape (B, N, {self.context_dim}) (one-hot over {self.num_classes} "
                f"classes + the null slot), got {tuple(context.shape)}"
            )
        row = context[:, 0, :].detach().cpu()
        if not row.is_floating_point():
            row = row.to(torch.float32)
        # One-hot <=> entries >= 0 and, per row, sum x = sum x^2 = 1 (x in [0, 1] has x^2 <= x,
        # with equality only at 0 and 1). Matrix-vector products keep it fast for large B.
        ones = torch.ones(self.context_dim, dtype=row.dtype)
        if row.numel() and not (
            bool(row.min() >= 0)
            and bool(((row @ ones) == 1).all())
            and bool((((row * row) @ ones) == 1).all())
        ):
            raise ValueError("context rows must be one-hot (see GaussianMixture.condition_context)")
        idx = (row @ torch.arange(self.context_dim, dtype=row.dtype)).round().long()
        return torch.where(idx == self.null_index, torch.full_like(idx, -1), idx)

    def sample_noised(
        self, n: int, t: int, c: Any = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        r"""``n`` exact samples of :math:`p_t(x)` (or :math:`p_t(x\mid c)`):
        :math:`x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon`, ``(n, d)`` float64.

        Passing these as the sampler's ``latents`` starts it from the *exact* :math:`p_T`
        instead of :math:`\mathcal{N}(0, I)` (they differ by :math:`\sqrt{\bar\alpha_T}\mu`,
        about 0.6% of the means for the linear schedule).
        """
        ab = _alpha_bar(self.alphas_cumprod, _check_int("t", t, 0), ())
        x0 = self.sample(n, c, generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    # ------------------------------------------------------------ tilted density at t = 0
    def tilted_log_prob(self, x: torch.Tensor, c: int, gamma: float) -> torch.Tensor:
        r"""Unnormalised :math:`\gamma \log p(x\mid c) + (1-\gamma)\log p(x)` at ``t = 0``, ``(...)``."""
        c = self._check_class_int(c)
        gamma = _check_gamma(gamma)
        return gamma * self.log_prob(x, None, c) + (1.0 - gamma) * self.log_prob(x, None, None)


def _check_gamma(gamma: Any, name: str = "gamma") -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)):
        if isinstance(gamma, torch.Tensor) and gamma.numel() == 1:
            gamma = float(gamma)
        else:
            raise TypeError(f"{name} must be a real number, got {type(gamma).__name__}")
    gamma = float(gamma)
    if not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {gamma}")
    return gamma


# ----------------------------------------------------------------------------
# the oracle denoiser and the exact classifier
# ----------------------------------------------------------------------------


class OracleDenoiser(nn.Module):
    r"""The exact ε-prediction of a :class:`GaussianMixture`, with the U-Net's call signature.

    Introduced in notebook 05. ``oracle(x_t, t, context) -> eps`` follows the
    course's denoiser protocol (docs/CONTRIBUTING.md), so
    :class:`~tutorial_lib.sampler.ConditionalDDIMSampler` runs on it unchanged:

    - ``x_t``: ``(B, d)`` float (``d`` = the mixture's dimension; ``(B,)`` is accepted in 1-D);
    - ``t``: ``(B,)`` training timesteps (long, or float: interpolated), or an int;
    - ``context``: ``(B, N, C + 1)`` **one-hot** rows (only token 0 is read), slot ``c``
      for class ``c`` and the *last* slot ``C`` for "no condition" -- the analogue of
      the encoded empty prompt. Build it with :meth:`GaussianMixture.condition_context`
      (``labels=None`` gives the null condition to pass as ``negative_embeddings``).
    - returns :math:`\varepsilon^*(x_t, t, c) = -\sqrt{1-\bar\alpha_t}\,\nabla\log p_t(x_t\mid c)`
      (the marginal score for the null slot), in ``x_t``'s dtype and shape.

    Attributes read by the sampler: ``prediction_type = "epsilon"`` and
    ``context_dim = C + 1``. ``num_calls`` counts forward calls and ``num_rows``
    the rows evaluated (network function evaluations).

    Args:
        mixture: the :class:`GaussianMixture`.
        schedule: the schedule mapping ``t`` to :math:`\bar\alpha_t`; default the mixture's.
    """

    prediction_type = "epsilon"

    def __init__(self, mixture: GaussianMixture, schedule: Any = None) -> None:
        super().__init__()
        if not isinstance(mixture, GaussianMixture):
            raise TypeError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
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
        if len(batch) != 1:
            raise ValueError(f"x_t must have shape (B, {m.dim}), got {tuple(x_t.shape)}")
        B = batch[0]
        state = self._state
        cache = state["context"]
        if cache is not None and cache[0] is context and cache[1] == context._version:
            labels = cache[2]  # the same context tensor as last call (e.g. every DDPM step)
        else:
            labels = m.decode_context(context)  # (B',), -1 = null
            state["context"] = (context, context._version, labels)
        if labels.shape[0] != B:
            raise ValueError(f"context must have batch size {B} (x_t's), got {labels.shape[0]}")
        if isinstance(t, torch.Tensor) and t.ndim == 1 and t.shape[0] != B:
            raise ValueError(f"t must have shape ({B},), got {tuple(t.shape)}")
        ab = _alpha_bar(self.alphas_cumprod, t, batch)
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
    r"""The exact noise-robust classifier of a mixture, ``classifier(x_t, t) -> logits (B, C)``.

    Introduced in notebook 05. The logits are :math:`\log p_t(c \mid x_t)` (already
    normalised, so ``log_softmax`` leaves them unchanged); differentiable in ``x_t``,
    so the sampler's ``classifier=`` option (autograd of :math:`\log p_t(y\mid x_t)`)
    gives exactly :meth:`GaussianMixture.log_posterior_grad`.
    """

    def __init__(self, mixture: GaussianMixture, schedule: Any = None) -> None:
        super().__init__()
        if not isinstance(mixture, GaussianMixture):
            raise TypeError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
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
# sampling: DDPM (ancestral, all T steps) and DDIM (the course sampler)
# ----------------------------------------------------------------------------


@torch.no_grad()
def ddpm_sample(
    denoiser: Any,
    schedule: Any,
    shape: Sequence[int],
    text_embeddings: torch.Tensor,
    negative_embeddings: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    guidance_interval: tuple[float, float] | None = None,
    latents: torch.Tensor | None = None,
    return_intermediates: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict]:
    r"""Ancestral DDPM sampling (Ho et al. 2020, Alg. 2) with classifier-free guidance, all ``T`` steps.

    Introduced in notebook 06. At every training timestep ``t = T-1 ... 0``, with
    the guided :math:`\tilde\varepsilon = \varepsilon_u + \gamma(\varepsilon_c - \varepsilon_u)`
    (``cfg_combine``; :math:`\gamma = 1` outside ``guidance_interval``):

    .. math::
        \hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\tilde\varepsilon)/\sqrt{\bar\alpha_t}, \qquad
        x_{t-1} = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\hat x_0
                + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t} x_t
                + \tilde\sigma_t z, \quad
        \tilde\sigma_t^2 = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t

    (DDPM eqs. 6-7, the posterior :math:`q(x_{t-1}\mid x_t, \hat x_0)`; :math:`\bar\alpha_{-1} = 1`,
    so the last step returns :math:`\hat x_0`). The coefficients are computed in float64 from
    :math:`\bar\alpha` alone (:math:`\alpha_t = \bar\alpha_t/\bar\alpha_{t-1}`,
    :math:`\beta_t = 1-\alpha_t`), consistent with the forward process the oracle uses. Algebraically this *is* the DDIM step with
    :math:`\eta = 1` at every training timestep: :math:`1-\bar\alpha_{t-1}-\tilde\sigma_t^2
    = \alpha_t(1-\bar\alpha_{t-1})^2/(1-\bar\alpha_t)`. The tests check that it equals
    ``ConditionalDDIMSampler.sample(..., eta=1.0, num_inference_steps=T)`` with the same
    generator (same draws in the same order: ``x_T`` then one ``z`` per step) to
    float64 round-off; this loop is kept because it states DDPM's own equations and
    runs the doubled CFG batch in one call.

    Args:
        denoiser: ``denoiser(x_t, t, context) -> eps`` (ε-prediction only).
        schedule: anything with ``alphas_cumprod`` (a :class:`~tutorial_lib.schedule.NoiseSchedule`);
            the step after ``t = 0`` lands on :math:`\bar\alpha = 1` (``set_alpha_to_one``).
        shape: ``(B, *sample_shape)``.
        text_embeddings: the condition, ``(B, ...)``.
        negative_embeddings: the null condition, required when ``guidance_scale != 1``.
        guidance_scale: :math:`\gamma \ge 0`.
        generator: draws ``x_T`` (unless ``latents``) and then one ``z`` per step.
        guidance_interval: ``(t_lo, t_hi)``: guide only for ``t_lo <= t <= t_hi``.
        latents: ``x_T`` of shape ``shape``.
        return_intermediates: also return ``{"timesteps", "x_t"}`` (``x_t`` every step,
            ``(T + 1, *shape)`` -- memory grows with ``T``).

    Returns:
        :math:`x_0`, ``shape``, in the embeddings' dtype.
    """
    from .guidance import cfg_combine, effective_guidance_scale

    if getattr(denoiser, "prediction_type", "epsilon") != "epsilon":
        raise ValueError("ddpm_sample supports epsilon-prediction denoisers only")
    if not isinstance(text_embeddings, torch.Tensor):
        raise TypeError(f"text_embeddings must be a torch.Tensor, got {type(text_embeddings).__name__}")
    shape = tuple(shape)
    if len(shape) < 2 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"shape must be a tuple of >= 2 positive ints (B, *sample_shape), got {shape!r}")
    if text_embeddings.shape[0] != shape[0]:
        raise ValueError(f"text_embeddings must have batch size {shape[0]}, got {text_embeddings.shape[0]}")
    guidance_scale = _check_gamma(guidance_scale, "guidance_scale")
    needs_uncond = guidance_scale != 1.0
    if needs_uncond:
        if negative_embeddings is None:
            raise ValueError(
                "negative_embeddings is required when guidance_scale != 1: pass the null condition"
            )
        if not isinstance(negative_embeddings, torch.Tensor) or negative_embeddings.shape != text_embeddings.shape:
            raise ValueError("negative_embeddings must be a tensor of text_embeddings' shape")
    if guidance_interval is not None:
        effective_guidance_scale(guidance_scale, 0, guidance_interval)  # validates the pair
    dtype = text_embeddings.dtype if text_embeddings.is_floating_point() else torch.float32
    device = text_embeddings.device
    # Coefficients in float64 from alpha_bar alone (alpha_t = ab_t / ab_{t-1}), so the reverse
    # step is exactly the posterior of the forward process the oracle's p_t is built from; beta_t
    # re-derived from a float32 alpha_bar differs from schedule.betas by ~1e-3 relative at small t.
    ac64 = _alphas_cumprod_of(schedule)
    prev64 = torch.cat([torch.ones(1, dtype=torch.float64), ac64[:-1]])  # ab_{t-1}, ab_{-1} = 1
    alpha64 = ac64 / prev64
    coef_x0 = (prev64.sqrt() * (1 - alpha64) / (1 - ac64)).to(device=device, dtype=dtype)
    coef_xt = (alpha64.sqrt() * (1 - prev64) / (1 - ac64)).to(device=device, dtype=dtype)
    sigma = ((1 - prev64) / (1 - ac64) * (1 - alpha64)).sqrt().to(device=device, dtype=dtype)
    sqrt_ab = ac64.sqrt().to(device=device, dtype=dtype)
    sqrt_1mab = (1 - ac64).sqrt().to(device=device, dtype=dtype)
    T = ac64.numel()
    if latents is None:
        x = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    else:
        if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != shape:
            raise ValueError(f"latents must be a tensor of shape {shape}")
        x = latents.to(device=device, dtype=dtype)
    B = shape[0]
    both = torch.cat([negative_embeddings, text_embeddings]) if needs_uncond else None
    traj = [x] if return_intermediates else None
    for t in range(T - 1, -1, -1):
        gamma = effective_guidance_scale(guidance_scale, t, guidance_interval)
        if gamma == 1.0:
            eps = denoiser(x, torch.full((B,), t, dtype=torch.long, device=device), text_embeddings)
        else:  # the doubled batch: one call for [uncond, cond]
            out = denoiser(torch.cat([x, x]), torch.full((2 * B,), t, dtype=torch.long, device=device), both)
            eps = cfg_combine(out[:B], out[B:], gamma)
        x0 = (x - sqrt_1mab[t] * eps) / sqrt_ab[t]  # predicted x_0
        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        x = coef_x0[t] * x0 + coef_xt[t] * x + sigma[t] * z  # posterior mean + beta-tilde noise
        if traj is not None:
            traj.append(x)
    if not return_intermediates:
        return x
    return x, {"timesteps": torch.arange(T - 1, -1, -1), "x_t": torch.stack(traj)}


@contextlib.contextmanager
def _torch_threads(num_threads: int | None):
    """Temporarily set torch's intra-op thread count (``None``: leave it alone)."""
    if num_threads is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(_check_int("num_threads", num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _resolve_schedule(mixture: GaussianMixture, schedule: Any) -> Any:
    from .schedule import NoiseSchedule

    sched = mixture.schedule if schedule is None else schedule
    if sched is None:
        sched = NoiseSchedule()
    if not isinstance(sched, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule for sampling, got {type(sched).__name__}")
    return sched


def _class_labels(mixture: GaussianMixture, c: Any, n: int) -> torch.Tensor:
    if isinstance(c, int) and not isinstance(c, bool):
        return torch.full((n,), mixture._check_class_int(c), dtype=torch.long)
    lab = torch.as_tensor(c)
    if lab.is_floating_point() or lab.dtype == torch.bool or lab.is_complex():
        raise TypeError(f"c must be an int class or (n,) integer labels, got dtype {lab.dtype}")
    lab = lab.to(torch.long).reshape(-1)
    if lab.numel() == 1:
        lab = lab.expand(n)
    if lab.numel() != n:
        raise ValueError(f"c must be an int or have n={n} labels, got {lab.numel()}")
    return lab


def sample_guided(
    mixture: GaussianMixture,
    n: int,
    c: Any,
    guidance_scale: float = 1.0,
    method: str = "ddim",
    num_inference_steps: int = 100,
    generator: torch.Generator | None = None,
    schedule: Any = None,
    guidance_interval: tuple[float, float] | None = None,
    timestep_spacing: str = "trailing",
    latents: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
    num_threads: int | None = 1,
) -> torch.Tensor:
    r"""``n`` CFG samples of class ``c`` from the oracle of ``mixture``, ``(n, d)``.

    Introduced in notebook 06. The guided noise prediction is
    :math:`\varepsilon_u + \gamma(\varepsilon_c - \varepsilon_u)` with the *exact*
    :math:`\varepsilon_c` and :math:`\varepsilon_u` (:class:`OracleDenoiser`), so any gap
    between these samples and :func:`tilted_target` is CFG's own, not a model's error.

    Args:
        mixture: the data distribution.
        n: number of samples.
        c: the class (int) or ``(n,)`` labels.
        guidance_scale: :math:`\gamma \ge 0`.
        method: ``"ddim"`` -- deterministic DDIM (:math:`\eta = 0`) with the course's
            :class:`~tutorial_lib.sampler.ConditionalDDIMSampler` and ``num_inference_steps``
            steps of ``timestep_spacing``; or ``"ddpm"`` -- ancestral sampling with all ``T``
            steps (:func:`ddpm_sample`; ``num_inference_steps`` is ignored).
        generator: for ``x_T`` (and DDPM's noise).
        schedule: a ``NoiseSchedule``; default the mixture's.
        guidance_interval: ``(t_lo, t_hi)`` in training timesteps; :math:`\gamma = 1` outside.
        timestep_spacing: DDIM's spacing; "trailing" (default here) starts at ``t = T-1``.
        latents: ``x_T`` ``(n, d)``; default :math:`\mathcal{N}(0, I)` from ``generator``.
        dtype: sampling precision (float64 by default; the oracle is float64 inside).
        num_threads: torch intra-op threads while sampling (restored afterwards); ``None``
            leaves the setting alone. Default 1: every step is a few dozen operations on
            arrays of ~1e4-1e5 numbers, where threading gains little, and on a shared CPU
            (other processes busy) two threads measured 50-90x *slower* than one here,
            from threads waiting for each other at every operation.
    """
    from .guiders import ClassifierFreeGuidance
    from .sampler import ConditionalDDIMSampler, SamplerConfig

    n = _check_int("n", n)
    guidance_scale = _check_gamma(guidance_scale, "guidance_scale")
    if method not in ("ddim", "ddpm"):
        raise ValueError(f"method must be 'ddim' or 'ddpm', got {method!r}")
    sched = _resolve_schedule(mixture, schedule)
    oracle = OracleDenoiser(mixture, sched)
    labels = _class_labels(mixture, c, n)
    cond = mixture.condition_context(labels, n, dtype=dtype)
    null = mixture.condition_context(None, n, dtype=dtype)
    if latents is not None:
        latents = latents.to(dtype).reshape(n, mixture.dim)
    with _torch_threads(num_threads):
        if method == "ddpm":
            return ddpm_sample(oracle, sched, (n, mixture.dim), cond, null, guidance_scale,
                               generator=generator, guidance_interval=guidance_interval, latents=latents)
        sampler = ConditionalDDIMSampler(oracle, sched, SamplerConfig(timestep_spacing=timestep_spacing),
                                         cfg_mode="batched")
        guider = ClassifierFreeGuidance(guidance_scale, interval=guidance_interval)
        return sampler.sample((n, mixture.dim), cond, null, guider, num_inference_steps,
                              generator=generator, latents=latents, progress=False)


# ----------------------------------------------------------------------------
# the tilted target p(x|c)^gamma p(x)^(1-gamma) at t = 0
# ----------------------------------------------------------------------------


class TiltedTarget:
    r""":math:`\tilde p_\gamma(x) \propto p(x\mid c)^\gamma\, p(x)^{1-\gamma}` at ``t = 0``: moments and samples.

    Introduced in notebook 06. Build it with :func:`tilted_target`. Attributes:

    - ``gamma``, ``c``; ``exact`` (bool) and ``method`` (a sentence saying how it was computed);
    - ``mean`` ``(d,)``, ``covariance`` ``(d, d)``, ``std`` ``(d,)`` (float64);
    - for the grid method: ``grid_error`` (max abs change of ``mean`` and ``std`` when the
      grid is halved -- an estimate of the quadrature error), ``boundary_mass`` (the
      probability in the outermost ring of cells: how much the box may cut off),
      ``points`` ``(M, d)`` cell centres, ``probs`` ``(M,)`` cell probabilities,
      ``cell`` ``(d,)`` cell widths and ``log_normalizer`` (:math:`\log Z`).
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
        n = _check_int("n", n)
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
    r"""The tilted distribution :math:`\tilde p_\gamma(x) \propto p(x\mid c)^\gamma\,p(x)^{1-\gamma}`
    that CFG is often said to sample (Ho & Salimans 2022, eq. 6 read as a score).

    Introduced in notebook 06. **When is there a closed form?** Only when the
    tilted density is itself a Gaussian mixture:

    - :math:`\gamma = 1`: it is :math:`p(x\mid c)`; :math:`\gamma = 0`: it is :math:`p(x)`;
    - :math:`p(x\mid c) = p(x)` (every component belongs to class ``c``): it is :math:`p(x)`.

    In these cases the result is exact (``exact=True``). Otherwise there is none,
    *even for one Gaussian per class with a shared covariance*: the marginal
    :math:`p(x) = \sum_c \pi_c p(x\mid c)` is a mixture, and a power
    :math:`p(x)^{1-\gamma}` of a mixture is not a mixture (for two Gaussians
    :math:`\tilde p_\gamma = p(x\mid c)\,(p(c\mid x)/\pi_c)^{\gamma-1}` with a logistic
    :math:`p(c\mid x)`). The Gaussian-times-Gaussian formula often quoted
    (precision :math:`\gamma\Lambda_c + (1-\gamma)\Lambda_u`) needs a *Gaussian*
    unconditional density, which a labelled mixture with two or more classes never has.

    **The numerical method** (1-D and 2-D): evaluate
    :math:`\gamma\log p(x\mid c) + (1-\gamma)\log p(x)` at the centres of a regular
    grid, normalise with log-sum-exp (midpoint rule: :math:`Z \approx h^d \sum_j \tilde p(x_j)`),
    and read off the moments. The box is the means of the relevant components
    :math:`\pm` ``margin`` standard deviations: for :math:`\gamma \ge 1` the class-``c``
    components suffice, because :math:`p(x) \ge \pi_c\, p(x\mid c)` and :math:`Z \ge 1`
    (Jensen) give :math:`\tilde p_\gamma \le \pi_c^{1-\gamma} p(x\mid c)`; for
    :math:`\gamma < 1` all components. ``grid_error`` compares with the half-resolution
    grid and ``boundary_mass`` is the mass of the outermost cells; both are tiny for the
    defaults (the midpoint rule converges faster than any power of the cell width for
    smooth, rapidly decaying densities).

    Args:
        mixture: the :class:`GaussianMixture` (1-D or 2-D).
        c: the class.
        gamma: :math:`\gamma \ge 0`.
        grid_size: cells per axis (default 4096 in 1-D, 400 in 2-D).
        margin: box half-width beyond the component means, in component standard deviations.
    """
    c = mixture._check_class_int(c)
    gamma = _check_gamma(gamma)
    if gamma == 1.0:
        return TiltedTarget(gamma, c, mixture=mixture, exact_class=c, method="exact: p(x|c)")
    if gamma == 0.0 or bool(mixture._member[:, c].all()):
        why = "gamma = 0" if gamma == 0.0 else "p(x|c) = p(x)"
        return TiltedTarget(gamma, c, mixture=mixture, exact_class=None, method=f"exact: p(x) ({why})")
    if grid_size is None:
        grid_size = 4096 if mixture.dim == 1 else 400
    grid_size = _check_int("grid_size", grid_size, 8)
    margin = float(margin)
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    comps = mixture.labels == c if gamma >= 1.0 else torch.ones_like(mixture.labels, dtype=torch.bool)
    sd = mixture.covariances[comps].diagonal(dim1=-2, dim2=-1).sqrt()  # (K', d)
    lo = (mixture.means[comps] - margin * sd).min(0).values
    hi = (mixture.means[comps] + margin * sd).max(0).values

    def solve(size: int):
        points, cell = _grid(lo, hi, size)
        logf = mixture.tilted_log_prob(points, c, gamma)
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


def _fmt_vec(v: Any, digits: int = 3, sign: bool = True) -> str:
    v = torch.as_tensor(v).reshape(-1).tolist()
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    if len(v) == 1:
        return f.format(v[0])
    return "(" + ", ".join(f.format(x) for x in v) + ")"


# ----------------------------------------------------------------------------
# ready-made mixtures for the notebooks
# ----------------------------------------------------------------------------


def example_mixture_1d(schedule: Any = None) -> GaussianMixture:
    r"""Two overlapping classes on a line: :math:`\tfrac12\mathcal{N}(-1, 0.5^2)` (class 0) and
    :math:`\tfrac12\mathcal{N}(+1, 0.5^2)` (class 1). The default of :func:`guidance_sweep_table`."""
    return GaussianMixture([0.5, 0.5], [-1.0, 1.0], [0.25, 0.25], labels=[0, 1], schedule=schedule)


def example_mixture_2d(schedule: Any = None) -> GaussianMixture:
    r"""A 2-D mixture for plots (notebook 05): class 0 is one elongated Gaussian, class 1 has two
    components, one of them close to class 0 (full covariances)."""
    return GaussianMixture(
        weights=[0.4, 0.35, 0.25],
        means=[[-1.5, 0.0], [1.5, 1.0], [0.5, -1.5]],
        covariances=[[[0.30, 0.15], [0.15, 0.20]], [[0.15, 0.0], [0.0, 0.30]], [[0.25, -0.10], [-0.10, 0.15]]],
        labels=[0, 1, 1],
        schedule=schedule,
    )


def interval_demo_mixture(schedule: Any = None) -> GaussianMixture:
    r"""The guidance-interval example (notebook 06), 1-D, component std 0.2:

    - class 0: a major mode at -2.5 (weight 0.3) and a minor mode at +0.5 (weight 0.2),
      so within the class the modes have proportions 0.6 : 0.4;
    - class 1: one mode at +2.5 (weight 0.5).

    At high noise the whole right half looks like class 1 (it holds 0.5 of the mass against
    class 0's 0.2), so :math:`\nabla\log p_t(0\mid x)` points left everywhere there and strong
    guidance pushes the trajectories that would have reached +0.5 to -2.5: the minor mode
    is dropped. Below :math:`\sigma_t \approx 1` the modes at +0.5 and +2.5 are resolved and
    guidance no longer hurts the minor mode.
    """
    return GaussianMixture([0.3, 0.2, 0.5], [-2.5, 0.5, 2.5], [0.04, 0.04, 0.04], labels=[0, 0, 1], schedule=schedule)


# ----------------------------------------------------------------------------
# the "show" functions of notebook 06
# ----------------------------------------------------------------------------


@dataclass
class GuidanceSweep:
    """The result of :func:`guidance_sweep_table`: one row per guidance scale.

    Each row is a dict with keys ``gamma``, ``target_mean``, ``target_std`` (the tilted
    target, ``(d,)``), ``target_exact``, ``ddim_mean``, ``ddim_std``, ``ddpm_mean``,
    ``ddpm_std`` (CFG samples, ``(d,)``), ``se_mean`` (Monte-Carlo standard error of the
    DDIM mean, ``std / sqrt(n)``). ``seconds`` is the wall time; ``str()`` prints the table.
    """

    c: int
    n: int
    num_inference_steps: int
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_text(self) -> str:
        header = ["gamma", "tilted target: mean", "std", "CFG DDIM: mean", "std",
                  "CFG DDPM: mean", "std", "MC s.e."]
        body = []
        for r in self.rows:
            star = "" if r["target_exact"] else "*"
            body.append([
                f"{r['gamma']:g}", _fmt_vec(r["target_mean"]) + star, _fmt_vec(r["target_std"], sign=False),
                _fmt_vec(r["ddim_mean"]), _fmt_vec(r["ddim_std"], sign=False),
                _fmt_vec(r["ddpm_mean"]), _fmt_vec(r["ddpm_std"], sign=False),
                f"{float(r['se_mean'].max()):.3f}",
            ])
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            padded = [cell.rjust(w) for cell, w in zip(cells, widths, strict=True)]
            return " | ".join([padded[0], " ".join(padded[1:3]), " ".join(padded[3:5]),
                               " ".join(padded[5:7]), padded[7]])

        title = (f"class c={self.c}, n={self.n} samples per cell; DDIM: eta=0, "
                 f"{self.num_inference_steps} steps; DDPM: ancestral, all T steps")
        rule = "-" * len(line(header))
        grid_err = max([r["grid_error"] or 0.0 for r in self.rows] + [0.0])
        # A power of ten above the error (at least 1e-12): round-off differs between CPUs.
        bound = 10.0 ** math.ceil(math.log10(max(grid_err, 1e-12)))
        foot = (f"* no closed form: computed on a grid (grid error < {bound:.0e}). "
                f"MC s.e. = std/sqrt(n) of the sample means. Time: {self.seconds:.1f} s")
        return "\n".join([title, line(header), rule, *[line(b) for b in body], foot])

    def __str__(self) -> str:
        return self.to_text()


def guidance_sweep_table(
    mixture: GaussianMixture | None = None,
    c: int = 1,
    gammas: Sequence[float] = (1, 3, 5, 8),
    n: int = 10000,
    num_inference_steps: int = 200,
    seed: int = 0,
    schedule: Any = None,
) -> GuidanceSweep:
    r"""What CFG really samples: mean and std of CFG samples (DDIM and DDPM) next to the tilted target.

    Introduced in notebook 06. For each :math:`\gamma` in ``gammas`` this draws ``n`` samples of
    class ``c`` with the exact guided noise prediction
    :math:`\varepsilon_u + \gamma(\varepsilon_c - \varepsilon_u)` by deterministic DDIM
    (the course sampler, ``num_inference_steps`` trailing steps; 200 is within ~0.005 of the
    ODE limit on the default mixture) and by ancestral DDPM (all ``T`` steps), and computes the
    moments of :math:`p(x\mid c)^\gamma p(x)^{1-\gamma}` (:func:`tilted_target`). At
    :math:`\gamma = 1` all three agree (up to Monte-Carlo error); for :math:`\gamma > 1` neither
    sampler produces the tilted distribution, and DDIM and DDPM disagree with each other:
    the guided ε is not the noise prediction of any noised version of the tilted target
    (:math:`p_t(x\mid c)^\gamma p_t(x)^{1-\gamma}` is not the diffusion of
    :math:`p_0(x\mid c)^\gamma p_0(x)^{1-\gamma}`), so the ODE and the SDE that would
    agree for a true score follow different paths.

    Args:
        mixture: default :func:`example_mixture_1d`.
        c: the class to guide towards.
        gammas: guidance scales :math:`\gamma \ge 0`.
        n: samples per (γ, sampler).
        num_inference_steps: DDIM steps.
        seed: every (γ, sampler) cell uses ``torch.Generator().manual_seed(seed)``.
        schedule: a ``NoiseSchedule``; default the mixture's.

    Returns:
        :class:`GuidanceSweep`; ``print(result)`` shows the table.
    """
    start = time.perf_counter()
    mixture = example_mixture_1d(schedule) if mixture is None else mixture
    c = mixture._check_class_int(c)
    n = _check_int("n", n)
    gammas = [_check_gamma(g) for g in gammas]
    out = GuidanceSweep(c=c, n=n, num_inference_steps=_check_int("num_inference_steps", num_inference_steps))
    for g in gammas:
        target = tilted_target(mixture, c, g)
        row = {"gamma": g, "target_mean": target.mean, "target_std": target.std,
               "target_exact": target.exact, "grid_error": target.grid_error}
        for method in ("ddim", "ddpm"):
            x = sample_guided(mixture, n, c, g, method=method, num_inference_steps=num_inference_steps,
                              generator=torch.Generator().manual_seed(seed), schedule=schedule)
            row[f"{method}_mean"], row[f"{method}_std"] = x.mean(0), x.std(0)
        row["se_mean"] = row["ddim_std"] / math.sqrt(n)
        out.rows.append(row)
    out.seconds = time.perf_counter() - start
    return out


@dataclass
class IntervalDemo:
    """The result of :func:`guidance_interval_demo`.

    ``true`` is the within-class proportion of each mode of class ``c`` (``(M,)``);
    ``proportions[name]`` the fraction of samples nearest to each mode for the runs
    ``"no guidance (gamma=1)"``, ``"gamma everywhere"`` and ``"gamma in [t_lo, t_hi]"``
    (per sampler, keys ``(run, sampler)``); ``str()`` prints the table.
    """

    c: int
    gamma: float
    interval: tuple[float, float]
    modes: list[float]
    true: torch.Tensor
    proportions: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_text(self) -> str:
        lo, hi = self.interval
        cols = " ".join(f"{'mode ' + _fmt_vec(torch.tensor(m), 2):>12}" for m in self.modes)
        lines = [f"class c={self.c}, gamma={self.gamma:g}, guidance interval t in [{lo:g}, {hi:g}]",
                 f"{'run':<26} {'sampler':<7} {cols}",
                 f"{'data p(x|c)':<26} {'':<7} " + " ".join(f"{float(p):>12.3f}" for p in self.true)]
        for (run, sampler), props in self.proportions.items():
            lines.append(f"{run:<26} {sampler:<7} " + " ".join(f"{float(p):>12.3f}" for p in props))
        lines.append(f"Time: {self.seconds:.1f} s")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def guidance_interval_demo(
    mixture: GaussianMixture | None = None,
    c: int = 0,
    gamma: float = 4.0,
    interval: tuple[float, float] = (80, 250),
    n: int = 10000,
    num_inference_steps: int = 50,
    seed: int = 0,
    samplers: Sequence[str] = ("ddim", "ddpm"),
    schedule: Any = None,
) -> IntervalDemo:
    r"""Guidance at high noise drops a mode; guiding only in a middle interval of t keeps it.

    Introduced in notebook 06, after Kynkäänniemi et al. (2024), "Applying guidance in a
    limited interval improves sample and distribution quality in diffusion models". On
    :func:`interval_demo_mixture` (class 0 has modes at -2.5 and +0.5 in proportions
    0.6 : 0.4; class 1 sits at +2.5) it samples class ``c`` three ways -- no guidance, CFG with
    :math:`\gamma` at every step, and CFG with :math:`\gamma` only for
    ``interval[0] <= t <= interval[1]`` (:math:`\gamma = 1`, the conditional prediction,
    elsewhere) -- and returns the fraction of samples nearest to each mode of class ``c``.
    With the defaults the interval (80, 250) is :math:`\sigma_t = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}`
    from about 0.28 (Kynkäänniemi et al.'s lower end for EDM2) to about 1. With the
    defaults (DDIM, ``n = 4000``) the interval run's proportions equal the unguided
    run's to three decimals (one sample in 4000 changes mode): by ``t = 250``
    nearly every trajectory has chosen its mode, so guidance inside the interval
    acts almost only *within* the modes (notebook 06 measures that).

    Args:
        mixture: default :func:`interval_demo_mixture`.
        c: the class (it should have at least two components).
        gamma: the guidance scale.
        interval: ``(t_lo, t_hi)`` in training timesteps.
        n: samples per run.
        num_inference_steps: DDIM steps (DDPM always uses all ``T``).
        seed: every run uses ``torch.Generator().manual_seed(seed)`` (deterministic).
        samplers: any of ``"ddim"``, ``"ddpm"``.
        schedule: a ``NoiseSchedule``; default the mixture's.
    """
    start = time.perf_counter()
    mixture = interval_demo_mixture(schedule) if mixture is None else mixture
    c = mixture._check_class_int(c)
    gamma = _check_gamma(gamma)
    comps = torch.nonzero(mixture.labels == c).reshape(-1)
    true = mixture.weights[comps] / mixture.class_priors[c]
    demo = IntervalDemo(c=c, gamma=gamma, interval=tuple(interval),
                        modes=[mixture.means[k].tolist() if mixture.dim > 1 else float(mixture.means[k, 0]) for k in comps],
                        true=true)
    runs = [("no guidance (gamma=1)", 1.0, None), (f"gamma={gamma:g} everywhere", gamma, None),
            (f"gamma={gamma:g} in [{interval[0]:g}, {interval[1]:g}]", gamma, tuple(interval))]
    for sampler in samplers:
        if sampler not in ("ddim", "ddpm"):
            raise ValueError(f"samplers must contain only 'ddim' and 'ddpm', got {sampler!r}")
        for name, g, iv in runs:
            x = sample_guided(mixture, n, c, g, method=sampler, num_inference_steps=num_inference_steps,
                              generator=torch.Generator().manual_seed(seed), guidance_interval=iv,
                              schedule=schedule)
            k = mixture.nearest_component(x, c)
            demo.proportions[(name, sampler)] = torch.stack([(k == j).double().mean() for j in comps])
    demo.seconds = time.perf_counter() - start
    return demo
