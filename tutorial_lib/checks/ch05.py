"""Checks for the exercises of notebook 05 (classifier guidance).

* ``check_classifier_guided_eps(my_classifier_guided_eps)``: the guided noise prediction
  ``my_classifier_guided_eps(eps, grad, alpha_bar_t, scale) -> ε̃`` with
  ε̃ = ε̂ − √(1 − ᾱ_t) · s · ∇ log p(y | x_t) (Dhariwal & Nichol 2021, Alg. 2), checked
  against :func:`tutorial_lib.guidance.classifier_guided_eps`. Recognised mistakes: the
  sign flipped, the square root missing, ᾱ_t used instead of 1 − ᾱ_t, the √(1 − ᾱ_t)
  factor left out (the score update applied to ε), dividing by it instead of
  multiplying, the scale ignored.
* ``check_log_prob_grad(my_log_prob_grad)``: ∇_{x_t} log p(y | x_t) of a classifier
  ``(x_t, t) -> logits (B, K)`` by autograd, ``my_log_prob_grad(classifier, x, t, y)``,
  checked against :func:`tutorial_lib.guidance.classifier_log_prob_grad`. Recognised
  mistakes: the gradient of the raw logit (not of the log-softmax), of the probability
  (not of its log), of the cross-entropy loss (the sign), of the batch *mean*,
  ``logits[:, y]`` instead of one label per row, one label for the whole batch.

The ε cases use ᾱ values of the course's schedule (``NoiseSchedule()``, linear,
T = 1000) and random tensors as *inputs* (any ε̂ and gradient will do for checking the
arithmetic). The gradient cases use two classifiers: a small **untrained**
(randomly initialised, seeded) noise-robust :class:`~tutorial_lib.classifiers.AttributeClassifier`
on 32×32 images, whose logits are not normalised, and the exact classifier of notebook
05's 2-D Gaussian mixture (:class:`~tutorial_lib.mixture.ExactClassifier`) with its
logits shifted by an amount that depends on ``x`` -- the posterior does not change
(softmax ignores a per-row shift), but the gradient of a raw logit does.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from ..classifiers import AttributeClassifier, AttributeHead, ClassifierConfig
from ..guidance import classifier_guided_eps, classifier_log_prob_grad
from ..mixture import ExactClassifier, example_mixture_2d
from ..schedule import NoiseSchedule
from ._core import Case, run_cases

__all__ = ["check_classifier_guided_eps", "check_log_prob_grad"]


@lru_cache(maxsize=None)
def _schedule() -> NoiseSchedule:
    return NoiseSchedule()


# ------------------------------------------------------------------- guided epsilon

_EPS = "Exercise 1 (my_classifier_guided_eps)"


def _eps_cases() -> list[Case]:
    acp = _schedule().alphas_cumprod
    g = torch.Generator().manual_seed(5)
    cases = []
    for name, shape, t, scale in (
        ("2-D points, t=300, s=2.5", (6, 2), 300, 2.5),
        ("images (2, 3, 8, 8), t=900, s=10", (2, 3, 8, 8), 900, 10.0),
        ("images (2, 3, 8, 8), t=50 (little noise), s=4", (2, 3, 8, 8), 50, 4.0),
        ("2-D points, t=600, s=1", (5, 2), 600, 1.0),
        ("2-D points, t=700, s=0 (no guidance)", (5, 2), 700, 0.0),
    ):
        # Inputs only: any ε̂ and any gradient check the arithmetic.
        eps = torch.randn(shape, generator=g)
        grad = 2 * torch.randn(shape, generator=g)
        cases.append(Case(name, (eps, grad, acp[t].clone(), scale)))
    return cases


def _eps_variants(eps, grad, a, s) -> dict[str, torch.Tensor]:
    """Outputs of the usual mistakes, keyed by the hint that explains them."""
    a = torch.as_tensor(a, dtype=eps.dtype)
    return {
        "the sign is flipped: ε̃ = ε̂ − √(1 − ᾱ_t) · s · ∇log p(y|x_t). Since ε̂ = −√(1 − ᾱ_t) · score, "
        "adding s·∇log p(y|x_t) to the score *subtracts* from ε̂; with '+' you push samples away "
        "from class y.": eps + (1 - a).sqrt() * s * grad,
        "the factor is √(1 − ᾱ_t), the noise standard deviation: you used 1 − ᾱ_t without the "
        "square root.": eps - (1 - a) * s * grad,
        "you used ᾱ_t where 1 − ᾱ_t belongs: the factor is √(1 − ᾱ_t), the standard deviation of "
        "the noise in x_t, which is near 1 at high noise.": eps - a.sqrt() * s * grad,
        "you used ᾱ_t without the square root, where √(1 − ᾱ_t) belongs.": eps - a * s * grad,
        "you added the guidance to ε̂ as if it were the score: ε and the score differ by the "
        "factor −√(1 − ᾱ_t), so the term is √(1 − ᾱ_t) · s · ∇log p(y|x_t).": eps - s * grad,
        "you divided by √(1 − ᾱ_t) instead of multiplying: score = −ε/√(1 − ᾱ_t), so going back "
        "from a score term to ε multiplies by √(1 − ᾱ_t).": eps - s * grad / (1 - a).sqrt(),
        "the scale s is missing: the gradient term is multiplied by s (s = 0 switches guidance "
        "off, s = 1 gives the class-conditional ε).": eps - (1 - a).sqrt() * grad,
    }


def _diagnose_eps(case: Case, got: torch.Tensor) -> str | None:
    eps, grad, a, s = case.args
    if got.shape != eps.shape:
        return "return one value per entry of eps: the same shape as eps (no reduction, no extra axis)."
    for hint, value in _eps_variants(eps, grad, a, s).items():
        if torch.allclose(got.to(value.dtype), value, atol=1e-5, rtol=1e-4):
            return hint
    return None


def check_classifier_guided_eps(fn) -> str:
    """Check ``fn(eps, grad, alpha_bar_t, scale) -> guided eps``.

    ``eps`` and ``grad`` are tensors of the same shape (``(B, 2)`` points or
    ``(B, C, H, W)`` images), ``alpha_bar_t`` is ᾱ_t as a 0-d float tensor, ``scale``
    a float s ≥ 0.
    """
    return run_cases(
        _EPS,
        fn,
        lambda eps, grad, a, s: classifier_guided_eps(eps, grad, a, s),
        _eps_cases(),
        diagnose=_diagnose_eps,
        hint="ε̃ = ε̂ − √(1 − ᾱ_t) · s · ∇log p(y|x_t): minus sign, square root of 1 − ᾱ_t, times s.",
    )


# ----------------------------------------------------------------- log p(y|x_t) grad

_GRAD = "Exercise 2 (my_log_prob_grad)"


class _ShiftedLogits(torch.nn.Module):
    """The mixture's exact classifier with every logit raised by ``3 x₁ − 2 x₂`` (per row).

    The class posterior is unchanged (softmax ignores a per-row shift), so
    ∇ log p(y | x_t) is unchanged too; the gradient of a single raw logit is not.
    """

    def __init__(self):
        super().__init__()
        self.exact = ExactClassifier(example_mixture_2d(_schedule()), _schedule())

    def forward(self, x, t):
        shift = 3 * x[:, :1] - 2 * x[:, 1:2]
        return self.exact(x, t) + shift


@lru_cache(maxsize=None)
def _image_classifier() -> AttributeHead:
    """A small, UNTRAINED (randomly initialised, seed 0) noise-robust classifier's colour head."""
    with torch.random.fork_rng():  # nn.Module initialisation has no generator argument
        torch.manual_seed(0)
        model = AttributeClassifier(
            ClassifierConfig(channels=(8, 16), time_conditioned=True, time_dim=16, num_groups=4)
        )
    return AttributeHead(model.eval(), "colour")


def _grad_cases() -> list[Case]:
    g = torch.Generator().manual_seed(11)
    head = _image_classifier()
    images = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    mixture_clf = _ShiftedLogits()
    points = torch.randn(5, 2, generator=g, dtype=torch.float64) * 1.5
    return [
        Case(
            "untrained noise-robust CNN, 3 images 32x32, colours [0, 2, 5], t=[10, 500, 900]",
            (head, images, torch.tensor([10, 500, 900]), torch.tensor([0, 2, 5])),
        ),
        Case(
            "2-D mixture's exact classifier with x-dependent logit shifts, classes [1, 0, 1, 1, 0], t=400",
            (mixture_clf, points, torch.full((5,), 400), torch.tensor([1, 0, 1, 1, 0])),
        ),
        Case(
            "the same classifier, one point, class 1, t=50",
            (mixture_clf, points[:1].clone(), torch.tensor([50]), torch.tensor([1])),
        ),
    ]


def _grad_of(fn, classifier, x, t) -> torch.Tensor:
    with torch.enable_grad():
        xx = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(classifier(xx, t)).sum(), xx)
    return g


def _grad_variants(classifier, x, t, y) -> dict[str, torch.Tensor]:
    rows = torch.arange(x.shape[0])
    variants = {
        "you differentiated the raw logit. Logits are only defined up to a per-row constant, and that "
        "constant can depend on x (here it does), so ∇logit_y is not ∇log p(y|x_t). Take "
        "log_softmax over the classes first, then pick class y.": _grad_of(
            lambda lg: lg[rows, y], classifier, x, t
        ),
        "you differentiated the probability p(y|x_t); guidance follows the gradient of its log, "
        "∇log p = ∇p / p (use log_softmax, not softmax).": _grad_of(
            lambda lg: F.softmax(lg, dim=-1)[rows, y], classifier, x, t
        ),
        "the sign is flipped: you differentiated the cross-entropy loss −log p(y|x_t). Guidance climbs "
        "log p(y|x_t), so take the gradient of +log_softmax(logits)[y].": -_grad_of(
            lambda lg: F.log_softmax(lg, dim=-1)[rows, y], classifier, x, t
        ),
        "you differentiated the batch *mean*: every row's gradient is divided by the batch size. Sum "
        "the per-row log-probabilities (row i only depends on x[i], so the gradient of the sum is "
        "each row's own gradient).": _grad_of(
            lambda lg: F.log_softmax(lg, dim=-1)[rows, y].mean(), classifier, x, t
        ),
        "logits[:, y] (or log_probs[:, y]) picks B columns for every row, so each sample is pushed "
        "towards every label of the batch. Pick one entry per row: log_probs[torch.arange(B), y] "
        "or log_probs.gather(1, y[:, None]).": _grad_of(
            lambda lg: F.log_softmax(lg, dim=-1)[:, y], classifier, x, t
        ),
        "every row used the label of row 0; row i must use y[i].": _grad_of(
            lambda lg: F.log_softmax(lg, dim=-1)[:, int(y[0])], classifier, x, t
        ),
    }
    return variants


def _diagnose_grad(case: Case, got: torch.Tensor) -> str | None:
    classifier, x, t, y = case.args
    if got.shape != x.shape:
        return "return the gradient with respect to x: the same shape as x."
    for hint, value in _grad_variants(classifier, x, t, y).items():
        if torch.allclose(got.detach().to(value.dtype), value, atol=1e-6, rtol=1e-4):
            return hint
    return None


def check_log_prob_grad(fn) -> str:
    """Check ``fn(classifier, x, t, y) -> ∇_x log softmax(classifier(x, t))[y]`` (``x``'s shape).

    ``classifier(x, t)`` returns logits ``(B, K)``; ``t`` and ``y`` are ``(B,)`` integer tensors.
    """
    return run_cases(
        _GRAD,
        fn,
        lambda classifier, x, t, y: classifier_log_prob_grad(classifier, x, t, y),
        _grad_cases(),
        atol=1e-6,
        rtol=1e-4,
        diagnose=_diagnose_grad,
        hint=(
            "x = x.detach().requires_grad_(True); log_p = log_softmax(classifier(x, t), -1)"
            "[torch.arange(B), y]; grad = torch.autograd.grad(log_p.sum(), x)[0]."
        ),
    )
