"""The checks of notebook 03 pass a right answer, explain a stub, and name planted mistakes."""

import math

import pytest
import torch

from tutorial_lib.attention import CrossAttention
from tutorial_lib.checks import ExerciseCheckFailed, ch03, check_attention, check_split_heads


def stub(*args, **kwargs):
    raise NotImplementedError


def attention_solution(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1) @ v


def _attention_with(scale=None, dim=-1, invert=False, fill=float("-inf"), use_mask=True):
    def fn(q, k, v, mask=None):
        d = q.shape[-1]
        scores = q @ k.transpose(-2, -1) * (1 / math.sqrt(d) if scale is None else scale(d))
        if mask is not None and use_mask:
            keep = ~mask if invert else mask
            scores = scores.masked_fill(~keep[:, None, None, :], fill)
        return scores.softmax(dim=dim) @ v

    return fn


def test_checks_are_exported():
    assert set(ch03.__all__) == {"check_attention", "check_split_heads"}


def test_attention_passes_on_solution():
    assert "all 3 cases pass" in check_attention(attention_solution)


def test_attention_passes_on_sdpa_and_the_package_math_path():
    def sdpa(q, k, v, mask=None):
        m = None if mask is None else mask[:, None, None, :]
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m)

    def package(q, k, v, mask=None):
        layer = CrossAttention(4, 4, num_heads=1, head_dim=q.shape[-1])
        return layer.attention_math(q, k, v, mask)[0]

    assert "pass" in check_attention(sdpa)
    assert "pass" in check_attention(package)


def test_attention_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_attention(stub)


@pytest.mark.parametrize(
    "mistake, message",
    [
        (_attention_with(scale=lambda d: 1 / d), "divided the scores by d"),
        (_attention_with(scale=lambda d: 1.0), "not scaled"),
        (_attention_with(scale=lambda d: math.sqrt(d)), "multiplied the scores by sqrt"),
        (_attention_with(dim=-2), "wrong axis"),
        (_attention_with(invert=True), "mask is inverted"),
        (_attention_with(use_mask=False), "mask is ignored"),
        (_attention_with(fill=0.0), "set masked scores to 0"),
        (
            lambda q, k, v, mask=None: (
                (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
                * (1 if mask is None else mask[:, None, None, :])
            ) @ v,
            "without renormalising",
        ),
        (lambda q, k, v, mask=None: (q @ k.transpose(-2, -1)).softmax(-1), "one row per QUERY"),
    ],
    ids=["by-d", "unscaled", "times-sqrt-d", "softmax-axis", "inverted-mask", "ignored-mask",
         "zero-fill", "zeroed-probs", "no-values"],
)
def test_attention_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_attention(mistake)


def test_attention_mask_must_be_keyword_compatible():
    # A learner function without a mask parameter fails with an explanation, not a crash.
    with pytest.raises(ExerciseCheckFailed, match="raised TypeError"):
        check_attention(lambda q, k, v: attention_solution(q, k, v))


# ----------------------------------------------------------------------------- split heads


def split_solution(x, num_heads):
    b, n, inner = x.shape
    return x.reshape(b, n, num_heads, inner // num_heads).transpose(1, 2)


def test_split_passes_on_solution_and_matches_the_package():
    assert "all 3 cases pass" in check_split_heads(split_solution)
    layer = CrossAttention(12, 8, num_heads=3)
    x = torch.arange(120.0).reshape(2, 5, 12)
    assert torch.equal(layer._split_heads(x), split_solution(x, 3))


def test_split_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_split_heads(stub)


@pytest.mark.parametrize(
    "mistake, message",
    [
        (lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1), "wrong order"),
        (lambda x, h: x.reshape(x.shape[0], x.shape[1], h, -1), r"add \.transpose\(1, 2\)"),
        (
            lambda x, h: x.reshape(x.shape[0], x.shape[1], -1, h).permute(0, 3, 1, 2),
            r"\(d, h\) instead of \(h, d\)",
        ),
    ],
    ids=["reshape-only", "no-transpose", "d-major"],
)
def test_split_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_split_heads(mistake)
