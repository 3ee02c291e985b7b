"""The checks of notebook 04 pass a right answer, explain a stub, and name planted mistakes."""

import pytest
import torch

from tutorial_lib.blocks import ConditionedResBlock
from tutorial_lib.checks import ExerciseCheckFailed, ch04, check_tokens_to_map, check_x0_from_eps
from tutorial_lib.schedule import NoiseSchedule


def stub(*args):
    raise NotImplementedError


def test_checks_are_exported():
    assert set(ch04.__all__) == {"check_tokens_to_map", "check_x0_from_eps"}


# ----------------------------------------------------------------------------- tokens -> map


def map_solution(tokens, x_in):
    b, _, height, width = x_in.shape
    return tokens.transpose(1, 2).reshape(b, tokens.shape[-1], height, width)


def test_map_passes_on_solution():
    assert "all 3 cases pass" in check_tokens_to_map(map_solution)


def test_map_reference_inverts_the_blocks_flatten():
    h = torch.randn(2, 6, 3, 5, generator=torch.Generator().manual_seed(0))
    tokens = h.flatten(2).transpose(1, 2)
    assert torch.equal(map_solution(tokens, torch.zeros(2, 4, 3, 5)), h)


def test_map_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_tokens_to_map(stub)


@pytest.mark.parametrize(
    "mistake, message",
    [
        (lambda t, x: t.reshape(x.shape[0], t.shape[-1], x.shape[2], x.shape[3]), "wrong order"),
        (lambda t, x: t.transpose(1, 2).reshape(x.shape), "channel count from the tokens"),
        (lambda t, x: t.reshape(x.shape[0], x.shape[2], x.shape[3], -1), "channels first"),
    ],
    ids=["reshape-only", "input-channels-bug", "channels-last"],
)
def test_map_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_tokens_to_map(mistake)


def test_package_block_changes_channels():
    block = ConditionedResBlock(8, 4, time_dim=16, context_dim=8, num_heads=2, num_groups=4)
    out = block(torch.randn(2, 8, 4, 4), torch.randn(2, 16), torch.randn(2, 3, 8))
    assert out.shape == (2, 4, 4, 4)


# ----------------------------------------------------------------------------- x0 from eps


def x0_solution(x_t, eps, alpha_bar):
    a = torch.as_tensor(alpha_bar, dtype=x_t.dtype)
    if a.ndim == 1:
        a = a[:, None, None, None]
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def test_x0_passes_on_solution():
    assert "all 3 cases pass" in check_x0_from_eps(x0_solution)


def test_x0_reference_matches_the_schedule():
    s = NoiseSchedule()
    g = torch.Generator().manual_seed(1)
    x_t, eps = torch.randn(3, 3, 4, 4, generator=g), torch.randn(3, 3, 4, 4, generator=g)
    t = torch.tensor([10, 500, 990])
    expected = s.predict_x0(eps, x_t, t)
    assert torch.allclose(x0_solution(x_t, eps, s.alphas_cumprod[t]), expected, atol=1e-5)
    assert torch.allclose(ch04._reference_x0(x_t, eps, s.alphas_cumprod[t]), expected, atol=1e-5)


def test_x0_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_x0_from_eps(stub)


def _col(a, x):
    a = torch.as_tensor(a, dtype=x.dtype)
    return a[:, None, None, None] if a.ndim == 1 else a


@pytest.mark.parametrize(
    "mistake, message",
    [
        (lambda x, e, a: (x - (1 - _col(a, x)) * e) / _col(a, x), "no square roots"),
        (lambda x, e, a: (x - (1 - _col(a, x)) * e) / _col(a, x).sqrt(), "needs a square root"),
        (lambda x, e, a: (x - (1 - _col(a, x)).sqrt() * e) / _col(a, x), r"not by ᾱ"),
        (lambda x, e, a: x - (1 - _col(a, x)).sqrt() * e, "forgot to divide"),
        (lambda x, e, a: (x - _col(a, x).sqrt() * e) / (1 - _col(a, x)).sqrt(), "swapped"),
        (lambda x, e, a: (x + (1 - _col(a, x)).sqrt() * e) / _col(a, x).sqrt(), "MINUS"),
        (
            lambda x, e, a: (x - (1 - torch.as_tensor(a)).sqrt() * e) / torch.as_tensor(a).sqrt(),
            r"reshape it to \(B, 1, 1, 1\)",
        ),
    ],
    ids=["no-sqrt", "noise-sqrt", "divide-by-a", "no-divide", "swapped", "sign", "no-broadcast"],
)
def test_x0_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_x0_from_eps(mistake)
