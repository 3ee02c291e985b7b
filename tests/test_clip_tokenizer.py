"""CLIPBPETokenizer (no transformers import) against the real transformers.CLIPTokenizer."""

import json

import pytest
import torch

from tutorial_lib import scenes, shapes
from tutorial_lib.clip_tokenizer import CLIPBPETokenizer
from tutorial_lib.tokenizer import load_clip_tokenizer

EDGE_CASES = [
    "", " ", "a cat", "A  Cat!!", "a red circle, (a blue square:1.3) AND [green]", "über café ﬁsh naïve",
    "an astronaut riding a horse on mars, highly detailed, 8k, trending on artstation " * 6,  # > 77 tokens
    "don't it's we're they've I'm you'll he'd", "1234567890 3.14 x²", "emoji 🐱 and 猫", "tab\tnew\nline",
    "<|startoftext|> inside <|endoftext|>", "!!!", "a" * 300,
]


@pytest.fixture(scope="module")
def pair():
    return CLIPBPETokenizer(), load_clip_tokenizer()


def _prompts():
    labels = scenes.sample_labels(300, torch.Generator().manual_seed(0))
    partial = scenes.sample_labels(100, torch.Generator().manual_seed(1))
    return (list(shapes.all_captions()) + scenes.caption_from_labels(labels)
            + scenes.caption_from_labels(partial) + EDGE_CASES)


def test_backend_is_the_one_transformers_builds(pair):
    ours, real = pair
    assert json.loads(ours.backend.to_str()) == json.loads(real.backend_tokenizer.to_str())


def test_pipeline_ids_equal_clip_tokenizer(pair):
    ours, real = pair
    prompts = _prompts()
    kw = dict(padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    a, b = ours(prompts, **kw), real(prompts, **kw)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a["attention_mask"], b["attention_mask"])
    assert a.input_ids.shape == (len(prompts), 77)
    assert torch.equal(ours("a cat", **kw).input_ids, real("a cat", **kw).input_ids)  # one str: (1, 77)


@pytest.mark.parametrize("kw", [dict(truncation=False, add_special_tokens=False),
                                dict(truncation=True, max_length=10),
                                dict(padding="max_length", max_length=20, truncation=True)])
def test_list_outputs_equal_clip_tokenizer(pair, kw):
    ours, real = pair
    assert ours(EDGE_CASES, **kw)["input_ids"] == real(EDGE_CASES, **kw)["input_ids"]
    assert ours("a red circle", **kw).input_ids == real("a red circle", **kw).input_ids


def test_lookups_equal_clip_tokenizer(pair):
    ours, real = pair
    ids = real("a red circle and a blue square", return_tensors="pt").input_ids[0]
    assert ours.convert_ids_to_tokens(ids) == real.convert_ids_to_tokens(ids)
    assert ours.convert_ids_to_tokens(320) == real.convert_ids_to_tokens(320)
    assert ours.convert_tokens_to_ids(["a</w>", "cat</w>"]) == real.convert_tokens_to_ids(["a</w>", "cat</w>"])
    for text in EDGE_CASES[:6]:
        assert ours.tokenize(text) == real.tokenize(text)
    assert ours.decode(ids) == real.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == real.decode(ids, skip_special_tokens=True)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "model_max_length", "vocab_size", "pad_token"):
        assert getattr(ours, name) == getattr(real, name), name


def test_load_pretrained_uses_it_without_importing_transformers():
    import subprocess
    import sys

    code = ("import sys; from tutorial_lib.pretrained import load_pretrained; m = load_pretrained(); "
            "m.encode(['a red circle']); print(type(m.tokenizer).__name__, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["CLIPBPETokenizer", "False"]
