"""The check of notebook 11 passes a right answer, explains a stub, and names planted mistakes."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from tutorial_lib.checks import ExerciseCheckFailed, ch11, check_condition_dropout  # noqa: E402
from tutorial_lib.text import encode_prompt, load_clip_tokenizer, load_text_encoder  # noqa: E402


def stub(*args):
    raise NotImplementedError


def solution(context, null_context, u, p_uncond):
    drop = (u < p_uncond)[:, None, None]
    return torch.where(drop, null_context.expand_as(context), context)


def test_check_is_exported():
    assert "check_condition_dropout" in ch11.__all__


def test_passes_on_solution():
    assert "all 5 cases pass" in check_condition_dropout(solution)


def test_passes_with_a_loop():
    def loop(context, null_context, u, p):
        out = context.clone()
        for i in range(context.shape[0]):
            if u[i] < p:
                out[i] = null_context[0]
        return out

    assert "pass" in check_condition_dropout(loop)


def test_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_condition_dropout(stub)


@pytest.mark.parametrize(
    "mistake, message",
    [
        (
            lambda c, n, u, p: torch.where((u < p)[:, None, None], torch.zeros_like(c), c),
            "you used zeros",
        ),
        (lambda c, n, u, p: solution(c, n, u, 1 - p), "inverted"),
        (lambda c, n, u, p: torch.where((u >= p)[:, None, None], n.expand_as(c), c), "inverted"),
        (lambda c, n, u, p: c, "row by row"),
        (lambda c, n, u, p: n if bool((u < p).any()) else c, "broadcast"),
    ],
    ids=["zeros", "one-minus-p", "greater-equal", "nothing-dropped", "not-broadcast"],
)
def test_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_condition_dropout(mistake)


def test_dropping_the_encoding_equals_dropping_the_caption():
    """What train_denoiser does (replace the caption by "" before encoding) is the reference."""
    tok = load_clip_tokenizer()
    encoder = load_text_encoder("tiny-clip", hidden_size=32, seed=3)
    captions = ["a red circle", "a small blue square in the top left", "a shape"]
    u = torch.tensor([0.1, 0.6, 0.05])
    dropped = ["" if x < 0.15 else c for c, x in zip(captions, u.tolist(), strict=True)]
    with torch.no_grad():
        by_caption, _ = encode_prompt(tok, encoder, dropped)
        context, _ = encode_prompt(tok, encoder, captions)
        null, _ = encode_prompt(tok, encoder, [""])
    by_encoding = ch11.reference_condition_dropout(context, null, u, 0.15)
    assert torch.allclose(by_caption, by_encoding, atol=1e-6)
