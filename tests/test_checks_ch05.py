"""The checks of notebook 05 pass a right answer, explain a stub, and name planted mistakes."""

import math

import pytest
import torch
import torch.nn.functional as F

from tutorial_lib.checks import (
    ExerciseCheckFailed,
    ch05,
    check_classifier_guided_eps,
    check_log_prob_grad,
)
from tutorial_lib.guidance import classifier_log_prob_grad
from tutorial_lib.mixture import example_mixture_2d
from tutorial_lib.schedule import NoiseSchedule


def stub(*args):
    raise NotImplementedError


def test_checks_are_exported():
    assert {"check_classifier_guided_eps", "check_log_prob_grad"} <= set(ch05.__all__)


# ------------------------------------------------------------------------ guided epsilon


def eps_solution(eps, grad, alpha_bar_t, scale):
    return eps - (1 - alpha_bar_t).sqrt() * scale * grad


def test_eps_passes_on_solution():
    assert "all 5 cases pass" in check_classifier_guided_eps(eps_solution)


def test_eps_passes_with_python_math():
    def with_math(eps, grad, a, s):
        return eps - math.sqrt(1 - float(a)) * s * grad

    assert "pass" in check_classifier_guided_eps(with_math)


def test_eps_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_classifier_guided_eps(stub)


@pytest.mark.parametrize(
    "mistake, message",
    [
        (lambda e, g, a, s: e + (1 - a).sqrt() * s * g, "the sign is flipped"),
        (lambda e, g, a, s: e - (1 - a) * s * g, "you used 1 − ᾱ_t without the square root"),
        (lambda e, g, a, s: e - a.sqrt() * s * g, "you used ᾱ_t where 1 − ᾱ_t belongs"),
        (lambda e, g, a, s: e - s * g, "as if it were the score"),
        (lambda e, g, a, s: e - s * g / (1 - a).sqrt(), "you divided by √"),
        (lambda e, g, a, s: e - (1 - a).sqrt() * g, "the scale s is missing"),
        (lambda e, g, a, s: (e - (1 - a).sqrt() * s * g).mean(0), "the same shape as eps"),
        (lambda e, g, a, s: e - 0.5 * (1 - a).sqrt() * s * g, "Hint: ε̃ = ε̂ − √"),
    ],
    ids=[
        "sign",
        "no-sqrt",
        "alpha-not-one-minus",
        "score-on-eps",
        "divided",
        "no-scale",
        "reduced",
        "unrecognised",
    ],
)
def test_eps_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_classifier_guided_eps(mistake)


def test_eps_at_scale_one_is_the_conditional_eps():
    """The identity the exercise rests on: at s = 1 with exact scores, ε̃ = ε(x_t | y)."""
    schedule = NoiseSchedule()
    mixture = example_mixture_2d(schedule)
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = 350
    a = schedule.alphas_cumprod[t].to(torch.float64)
    guided = eps_solution(mixture.eps(x, t), mixture.log_posterior_grad(x, t, 1), a, 1.0)
    assert torch.allclose(guided, mixture.eps(x, t, 1), atol=1e-10)


# ------------------------------------------------------------------- log p(y|x_t) grad


def grad_solution(classifier, x, t, y):
    x = x.detach().requires_grad_(True)
    log_p = F.log_softmax(classifier(x, t), dim=-1)[torch.arange(x.shape[0]), y]
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    return grad


def grad_with_backward(classifier, x, t, y):
    x = x.detach().clone().requires_grad_(True)
    F.log_softmax(classifier(x, t), dim=-1).gather(1, y[:, None]).sum().backward()
    return x.grad


def test_grad_passes_on_solutions():
    assert "all 3 cases pass" in check_log_prob_grad(grad_solution)
    assert "all 3 cases pass" in check_log_prob_grad(grad_with_backward)


def test_grad_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_log_prob_grad(stub)


def _grad_mistake(pick, sign=1.0):
    def fn(classifier, x, t, y):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(pick(classifier(x, t), y).sum(), x)
        return sign * g

    return fn


_ROWS = lambda lg: torch.arange(lg.shape[0])  # noqa: E731


@pytest.mark.parametrize(
    "mistake, message",
    [
        (_grad_mistake(lambda lg, y: lg[_ROWS(lg), y]), "you differentiated the raw logit"),
        (
            _grad_mistake(lambda lg, y: F.softmax(lg, -1)[_ROWS(lg), y]),
            "you differentiated the probability",
        ),
        (
            _grad_mistake(lambda lg, y: F.cross_entropy(lg, y, reduction="sum")),
            "the sign is flipped",
        ),
        (
            _grad_mistake(lambda lg, y: F.log_softmax(lg, -1)[_ROWS(lg), y].mean()),
            "batch \\*mean\\*",
        ),
        (_grad_mistake(lambda lg, y: F.log_softmax(lg, -1)[:, y]), "picks B columns"),
        (_grad_mistake(lambda lg, y: F.log_softmax(lg, -1)[:, y[0]]), "label of row 0"),
        (lambda c, x, t, y: grad_solution(c, x, t, y)[0], "same shape as x"),
        (lambda c, x, t, y: 2 * grad_solution(c, x, t, y), "Hint: x = x.detach"),
    ],
    ids=[
        "logit",
        "probability",
        "cross-entropy",
        "mean",
        "columns",
        "first-label",
        "shape",
        "unrecognised",
    ],
)
def test_grad_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_log_prob_grad(mistake)


def test_shifted_classifier_has_the_exact_posterior_gradient():
    """The x-dependent logit shift changes no log-probability, so the reference gradient is the
    mixture's exact ∇log p_t(y | x)."""
    clf = ch05._ShiftedLogits()
    mixture = clf.exact.mixture
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    t = torch.full((4,), 200)
    got = classifier_log_prob_grad(clf, x, t, y)
    assert torch.allclose(got, mixture.log_posterior_grad(x, 200, y), atol=1e-10)


def test_image_classifier_is_deterministic_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    ch05._image_classifier.cache_clear()
    first = [p.clone() for p in ch05._image_classifier().parameters()]
    ch05._image_classifier.cache_clear()
    second = list(ch05._image_classifier().parameters())
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert torch.equal(state, torch.random.get_rng_state())
