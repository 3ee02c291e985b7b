"""The checks of notebook 02 pass a right answer, explain a stub, and name planted mistakes."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from tutorial_lib.checks import (  # noqa: E402
    ExerciseCheckFailed,
    ch02,
    check_clip_skip,
    check_pooled_output,
)
from tutorial_lib.text import clip_hidden_states  # noqa: E402
from tutorial_lib.text_loading import load_text_encoder  # noqa: E402
from tutorial_lib.tokenizer import load_clip_tokenizer, tokenize_prompts  # noqa: E402


def stub(*args):
    raise NotImplementedError


# ----------------------------------------------------------------------------- pooling


def pooled_solution(last_hidden_state, input_ids):
    positions = (input_ids == 49407).int().argmax(dim=-1)
    return last_hidden_state[torch.arange(last_hidden_state.shape[0]), positions]


def test_checks_are_exported():
    assert {"check_pooled_output", "check_clip_skip"} <= set(ch02.__all__)


def test_pooled_passes_on_solution():
    assert "all 3 cases pass" in check_pooled_output(pooled_solution)


def test_pooled_argmax_of_ids_is_also_right():
    # The legacy transformers rule: argmax of the ids finds the first 49407 (the largest id).
    assert "pass" in check_pooled_output(lambda h, ids: h[torch.arange(h.shape[0]), ids.argmax(-1)])


def test_pooled_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_pooled_output(stub)


@pytest.mark.parametrize(
    "mistake, message",
    [
        (lambda h, ids: h[:, 0], "token 0, the start token"),
        (lambda h, ids: h[:, -1], "FIRST position holding 49407"),
        (
            lambda h, ids: h[torch.arange(h.shape[0]), (ids == 49407).int().argmax(-1) - 1],
            "off by one",
        ),
        (lambda h, ids: h.mean(1), "does not average"),
        (lambda h, ids: h[:, (ids[0] == 49407).int().argmax()], "Hint: pool at the first"),
    ],
    ids=["token0", "last-position", "last-word", "mean", "first-row-only"],
)
def test_pooled_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_pooled_output(mistake)


def test_pooled_wrong_shape_is_explained():
    with pytest.raises(ExerciseCheckFailed, match=r"expected shape .*\n.*torch.arange"):
        check_pooled_output(lambda h, ids: h[:, (ids == 49407).int().argmax(-1)])


def test_pooled_reference_is_pooler_output():
    tok = load_clip_tokenizer()
    model = load_text_encoder("tiny-clip", seed=3)
    ids = tokenize_prompts(tok, ["a red circle", ""])
    with torch.no_grad():
        out = model(ids)
    assert torch.equal(pooled_solution(out.last_hidden_state, ids), out.pooler_output)


# ----------------------------------------------------------------------------- clip-skip


def skip_solution(hidden_states, final_layer_norm, clip_skip):
    return final_layer_norm(hidden_states[-(clip_skip + 1)])


def test_clip_skip_passes_on_solution():
    assert "all 4 cases pass" in check_clip_skip(skip_solution)


def test_clip_skip_stub_is_not_implemented():
    with pytest.raises(ExerciseCheckFailed, match="not implemented yet"):
        check_clip_skip(stub)


@pytest.mark.parametrize(
    "mistake, message",
    [
        (lambda hs, ln, k: hs[-(k + 1)], "forgot the final layer norm"),
        (
            lambda hs, ln, k: ln(hs[-k]) if k else ln(hs[-1]),
            r"off by one: you took hidden_states\[-1\]",
        ),
        (lambda hs, ln, k: ln(hs[-(k + 2)]), r"off by one: you took hidden_states\[-3\]"),
        (lambda hs, ln, k: ln(hs[-(k + 1)]) if k else ln(hs[-k]), r"hidden_states\[-0\]"),
        (lambda hs, ln, k: ln(hs[k]), "count from the end"),
    ],
    ids=["no-layer-norm", "minus-k", "minus-k-plus-2", "minus-zero", "from-the-front"],
)
def test_clip_skip_names_planted_mistakes(mistake, message):
    with pytest.raises(ExerciseCheckFailed, match=message):
        check_clip_skip(mistake)


def test_clip_skip_reference_matches_the_package():
    model = load_text_encoder("tiny-clip", num_hidden_layers=3, seed=4)
    ids = tokenize_prompts(load_clip_tokenizer(), ["a blue square", "a cat"])
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
        norm = (
            model.final_layer_norm
            if hasattr(model, "final_layer_norm")
            else model.text_model.final_layer_norm
        )
        for k in (0, 1, 2):
            expected = clip_hidden_states(model, ids, clip_skip=k)
            assert torch.allclose(ch02._reference_clip_skip(out.hidden_states, norm, k), expected)
        assert torch.allclose(
            ch02._reference_clip_skip(out.hidden_states, norm, 0), out.last_hidden_state
        )
