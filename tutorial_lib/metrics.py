"""Distribution-level metrics: how close a set of generated images is to real ones, as a set.

Introduced in notebook 06 (the guidance-scale trade-off) and used by ``make eval``
(``scripts/evaluate.py``). Prompt accuracy alone saturates: a sampler that draws
the same perfect image every time scores 100 %. These metrics compare
*distributions* in a feature space ``φ`` (for the scenes: the judge's per-cell
features, :meth:`tutorial_lib.classifiers.SceneClassifier.features`):

- :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to the
  two feature sets (Heusel et al. 2017). Computed in the *judge's* feature space it
  is an FID analogue for this world; it is **not FID** (no Inception network, no
  ImageNet features) and its values are not comparable with published FIDs.
- :func:`precision_recall`: k-nearest-neighbour manifold precision and recall
  (Kynkäänniemi et al. 2019): precision is the share of generated samples that
  fall inside the real data's manifold (fidelity), recall the share of real
  samples inside the generated manifold (coverage of the data's variety).
- :func:`attribute_coverage`: for the attributes a partial caption leaves free,
  how evenly the generated images spread over their values, against the data's.

Each comes with a bootstrap confidence interval (:func:`bootstrap_interval`), so a
difference between two guidance scales can be told from sampling noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import _checks

__all__ = [
    "frechet_distance",
    "precision_recall",
    "attribute_coverage",
    "bootstrap_interval",
    "frechet_distance_with_interval",
    "precision_recall_with_interval",
]


def _check_features(name: str, x, dim: int | None = None) -> torch.Tensor:
    _checks.that(isinstance(x, torch.Tensor) and x.dim() == 2 and x.shape[0] >= 2, f"{name} must be a (N, D) tensor of features with N >= 2, got {tuple(getattr(x, 'shape', ())) or type(x).__name__}")
    _checks.that(dim in (None, x.shape[1]), f"{name} has {x.shape[1]} features per sample, expected {dim} (as the other set)")
    return x.detach().double()


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (eigendecomposition, eigenvalues ≥ 0)."""
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(real: torch.Tensor, generated: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, eq. 6).

    ``d² = ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2 (Σ_r^{1/2} Σ_g Σ_r^{1/2})^{1/2})``

    (the trace term written with the symmetric form of ``(Σ_r Σ_g)^{1/2}``, which has
    the same trace and is computed stably by two eigendecompositions).

    Args:
        real: ``(N, D)`` features of real images.
        generated: ``(M, D)`` features of generated images.

    Returns:
        ``d²`` (the quantity FID reports), in squared feature units. It is biased
        upwards at small N: two independent real sets do not give 0 (the noise floor
        is reported next to it wherever the course uses it).
    """
    a = _check_features("real", real)
    b = _check_features("generated", generated, a.shape[1])
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    root_a = _sqrtm_psd(cov_a)
    cross = _sqrtm_psd(root_a @ cov_b @ root_a)
    value = (mu_a - mu_b).square().sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * torch.trace(cross)
    return float(value.clamp(min=0))


def _kth_neighbour_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each row of ``x`` to its ``k``-th nearest other row, ``(N,)``."""
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values  # +1: the row itself, at distance 0, comes first


def _inside_manifold(manifold: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    """Whether each query lies in some ball ``B(m, r_k(m))`` around a manifold point, ``(M,)`` bool."""
    radius = _kth_neighbour_radius(manifold, k)
    return (torch.cdist(queries, manifold) <= radius.view(1, -1)).any(dim=1)


def precision_recall(real: torch.Tensor, generated: torch.Tensor, k: int = 3) -> dict[str, torch.Tensor]:
    """k-NN manifold precision and recall (Kynkäänniemi et al. 2019, eq. 1–3).

    The manifold of a set ``Φ`` is the union of balls centred on its points, each with
    the radius of the distance to that point's ``k``-th nearest neighbour in ``Φ``:

    ``precision = (1/M) Σ_g 1[φ_g ∈ manifold(Φ_real)]``,
    ``recall    = (1/N) Σ_r 1[φ_r ∈ manifold(Φ_gen)]``.

    Args:
        real: ``(N, D)`` real features; generated: ``(M, D)`` generated features.
        k: neighbourhood size (3 in the paper).

    Returns:
        ``{"precision": float, "recall": float, "precision_hits": (M,) bool,
        "recall_hits": (N,) bool}`` (the per-sample indicators the interval resamples).

    Known bias, measured on real scenes in the judge's features (``tests/test_metrics_real.py``):
    a set lacking half the colours has recall 0.54 at N = M = 512 on single-object scenes
    (truth 0.5; 0.47 at 1024), but 0.70 on multi-object scenes where only 33 % of the real
    scenes are coverable (0.53 at N = 2048): with many factors per image, a k-th neighbour
    often differs in another attribute, so the balls are wide and over-cover. Compare recall
    between settings at the same N; do not read it as an absolute share.
    """
    a = _check_features("real", real)
    b = _check_features("generated", generated, a.shape[1])
    _checks.integer("k", k, 1, min(a.shape[0], b.shape[0]) - 1)
    p_hits, r_hits = _inside_manifold(a, b, k), _inside_manifold(b, a, k)
    return {"precision": p_hits.double().mean().item(), "recall": r_hits.double().mean().item(),
            "precision_hits": p_hits, "recall_hits": r_hits}


def attribute_coverage(values: torch.Tensor, num_classes: int, reference: torch.Tensor | None = None) -> dict:
    """How evenly samples spread over an attribute's values, against the data's spread.

    For the attributes a partial caption leaves free ("a red shape": the shape is
    free), the data draws each value uniformly; a guided model that always draws
    circles has lost that variety even if it is "right". With ``p`` the empirical
    distribution of ``values`` and ``q`` the reference's (uniform if ``reference`` is None):

    ``entropy ratio = H(p) / H(q)`` (1 = as varied as the data; Shannon entropy in nats),
    ``coverage = Σ_k min(p_k, q_k)`` (1 − total variation; 1 = the data's distribution).

    Args:
        values: ``(N,)`` long, the attribute read from each sample (negative entries ignored).
        num_classes: number of values ``K``.
        reference: optional ``(M,)`` long values of real data.
    """
    _checks.shape("values", values, (None,), "(N,) class indices")
    _checks.integer("num_classes", num_classes, 2)

    def dist(v):
        v = v[v >= 0]
        return torch.bincount(v.long(), minlength=num_classes).double() / max(1, v.numel()), v.numel()

    p, n = dist(values)
    q = dist(reference)[0] if reference is not None else torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)

    def entropy(x):
        x = x[x > 0]
        return float(-(x * x.log()).sum())

    h_q = entropy(q)
    return {"entropy_ratio": entropy(p) / h_q if h_q > 0 else math.nan,
            "coverage": float(torch.minimum(p, q).sum()), "n": n}


def bootstrap_interval(
    statistic: Callable[..., float],
    *samples: torch.Tensor,
    num_resamples: int = 200,
    confidence: float = 0.95,
    generator: torch.Generator | None = None,
    bias_corrected: bool = False,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*samples)`` (Efron & Tibshirani 1993, ch. 13).

    Each sample (a tensor whose first dimension indexes observations) is resampled
    with replacement, independently of the others, ``num_resamples`` times; the
    interval is the ``(1 ± confidence)/2`` quantiles of the recomputed statistic.

    ``bias_corrected``: shift the interval by ``θ̂ − mean(θ*)`` (the bootstrap estimate of the
    statistic's bias, Efron & Tibshirani §10.2). Needed for statistics that resampling itself
    inflates: a resample with replacement repeats points, so it holds fewer distinct ones, and
    a covariance-based distance such as the Fréchet distance grows as its sample shrinks — the
    plain percentile interval can then lie entirely above the estimate.
    """
    _checks.that(samples, "bootstrap_interval needs at least one sample")
    _checks.integer("num_resamples", num_resamples, 10)
    _checks.that(0 < confidence < 1, f"confidence must lie in (0, 1), got {confidence!r}")
    generator = generator or torch.Generator().manual_seed(0)
    stats = []
    for _ in range(num_resamples):
        idx = [torch.randint(s.shape[0], (s.shape[0],), generator=generator) for s in samples]
        stats.append(statistic(*(s[i] for s, i in zip(samples, idx, strict=True))))
    stats = torch.tensor(stats, dtype=torch.float64)
    q = stats.quantile(torch.tensor([(1 - confidence) / 2, (1 + confidence) / 2], dtype=torch.float64))
    if bias_corrected:
        q = q + (statistic(*samples) - stats.mean())
    return float(q[0]), float(q[1])


def frechet_distance_with_interval(real, generated, num_resamples: int = 100, generator=None) -> dict:
    """:func:`frechet_distance` and its bias-corrected bootstrap interval (both sets resampled).

    The interval is shifted by the bootstrap's bias estimate (see :func:`bootstrap_interval`):
    resampling with replacement raises the Fréchet distance by itself, so the uncorrected
    percentile interval sits above the estimate. The lower end is clipped at 0.
    """
    value = frechet_distance(real, generated)
    lo, hi = bootstrap_interval(frechet_distance, real, generated, num_resamples=num_resamples,
                                generator=generator, bias_corrected=True)
    return {"value": value, "low": max(lo, 0.0), "high": hi}


def precision_recall_with_interval(real, generated, k: int = 3, num_resamples: int = 500, generator=None) -> dict:
    """:func:`precision_recall` with bootstrap intervals of both.

    The manifolds are built once from all samples and held fixed; the interval
    resamples the per-sample indicators (resampling the manifold's own points with
    replacement would create duplicate points at distance 0 and shrink every radius).
    """
    pr = precision_recall(real, generated, k)
    out = {}
    for name in ("precision", "recall"):
        hits = pr[f"{name}_hits"].double()
        lo, hi = bootstrap_interval(lambda h: float(h.mean()), hits, num_resamples=num_resamples, generator=generator)
        out[name] = {"value": pr[name], "low": lo, "high": hi}
    return out
