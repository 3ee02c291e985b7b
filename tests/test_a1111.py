"""AUTOMATIC1111's knobs (tutorial_lib.a1111): prompt emphasis equals the webui's parser and formula,
and s_min_uncond skips exactly the unconditional passes the webui's rule picks."""

import pytest
import torch

from tutorial_lib import a1111 as A
from tutorial_lib.guiders import ClassifierFreeGuidance, GuidanceStep
from tutorial_lib.sampler import ConditionalDDIMSampler
from tutorial_lib.schedule import NoiseSchedule
from tutorial_lib.sd_bridge import sd_noise_schedule
from tutorial_lib.text import (
    EOS_TOKEN_ID,
    _final_layer_norm,
    clip_hidden_states,
    encode_prompt,
    load_clip_tokenizer,
    load_text_encoder,
    tokenize_prompts,
)


@pytest.fixture(scope="module")
def clip():
    encoder = load_text_encoder("tiny-clip", seed=0)
    # Untrained, the final LayerNorm's bias is 0 and every token's features average to 0, which makes
    # A1111's mean rescale 0/0; a trained CLIP's bias is not 0: give it one, so the rescale is defined.
    with torch.no_grad():
        _final_layer_norm(encoder).bias.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
    return load_clip_tokenizer(), encoder


# --------------------------------------------------------------------------- the parser

# The examples of parse_prompt_attention's docstring, AUTOMATIC1111/stable-diffusion-webui
# modules/prompt_parser.py (commit 0674fabd), with their expected outputs as printed there.
A1111_DOCTESTS = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
      (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)]),
]


@pytest.mark.parametrize("text, expected", A1111_DOCTESTS)
def test_parser_reproduces_a1111_docstring_examples_exactly(text, expected):
    assert A.parse_prompt_attention(text) == expected  # the same floats, not just close ones


@pytest.mark.parametrize("text, expected", [
    ("[abc]", [("abc", 1 / 1.1)]),
    ("(abc:3.12)", [("abc", 3.12)]),
    ("((a:2)) b", [("a", 2 * 1.1), (" b", 1.0)]),
    ("[[a]", [("a", 1 / 1.1 / 1.1)]),  # the unclosed outer bracket is closed at the end
    ("a\\\\b \\[c\\)", [("a\\b [c)", 1.0)]),  # escaped backslash and brackets are literal
    ("a) b] c:", [("a) b] c:", 1.0)]),  # closing brackets with nothing open are text
    ("cat BREAK dog", [("cat BREAK dog", 1.0)]),  # BREAK is text here (no chunking)
    ("", [("", 1.0)]),
])
def test_parser_grammar(text, expected):
    assert A.parse_prompt_attention(text) == expected


# --------------------------------------------------------------------------- the weighting


def a1111_original_emphasis(z, multipliers):
    """AUTOMATIC1111/stable-diffusion-webui modules/sd_emphasis.py, EmphasisOriginal.after_transformers
    (inline in modules/sd_hijack_clip.py's process_tokens before v1.8), on one prompt's tensor."""
    original_mean = z.mean()
    z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
    new_mean = z.mean()
    z = z * (original_mean / new_mean)
    return z


def test_apply_emphasis_equals_a1111_formula_per_prompt():
    g = torch.Generator().manual_seed(0)
    z, w = torch.randn(3, 77, 16, generator=g) + 0.3, 1 + 0.4 * torch.rand(3, 77, generator=g)
    ours = A.apply_emphasis(z, w)
    for b in range(3):  # A1111 encodes one prompt per call: its z.mean() is that prompt's mean
        torch.testing.assert_close(ours[b:b + 1], a1111_original_emphasis(z[b:b + 1], w[b:b + 1]),
                                   rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(A.apply_emphasis(z, w, normalize=False), z * w[..., None])  # "No norm"
    assert torch.equal(A.apply_emphasis(z, torch.ones(3, 77)), z)
    centred = z - z.mean(dim=(1, 2), keepdim=True)  # mean 0: A1111 gives 0/0; no emphasis stays z
    assert torch.equal(A.apply_emphasis(centred, torch.ones(3, 77)), centred)


def test_no_emphasis_is_exactly_encode_prompt(clip):
    tok, enc = clip
    long = " ".join(["a red circle beside two blue squares"] * 20)  # > 77 tokens: cut the same way
    prompts = ["a red circle", "", long]
    for clip_skip in (None, 1):
        ours = A.encode_prompt_with_emphasis(tok, enc, prompts, clip_skip=clip_skip)
        assert torch.equal(ours, encode_prompt(tok, enc, prompts, clip_skip=clip_skip)[0])


def test_emphasis_weights_the_features_of_the_unweighted_ids(clip):
    tok, enc = clip
    ids, w = A.tokenize_with_emphasis(tok, ["a (red:1.5) [cat]", "two ((blue)) squares"])
    assert torch.equal(ids, tokenize_prompts(tok, ["a red cat", "two blue squares"]))
    r, c = 1.5, 1 / 1.1
    assert w[0, :5].tolist() == pytest.approx([1.0, 1.0, r, c, 1.0]) and w[1, 2].item() == pytest.approx(1.21)
    assert (w[:, 5:] == 1).all()  # EOS and pads
    z = clip_hidden_states(enc, ids)  # one encoder run on the plain ids, as A1111
    ours = A.encode_prompt_with_emphasis(tok, enc, ["a (red:1.5) [cat]", "two ((blue)) squares"])
    for b in range(2):
        torch.testing.assert_close(ours[b:b + 1], a1111_original_emphasis(z[b:b + 1], w[b:b + 1]),
                                   rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ours, z)


def test_emphasis_modes_and_truncation(clip):
    tok, enc = clip
    plain, literal = encode_prompt(tok, enc, ["a red cat", "a (red:1.5) cat"])[0].split(1)
    assert torch.equal(A.encode_prompt_with_emphasis(tok, enc, "a (red:1.5) cat", emphasis="Ignore"), plain)
    assert torch.equal(A.encode_prompt_with_emphasis(tok, enc, "a (red:1.5) cat", emphasis="None"), literal)
    ids, w = A.tokenize_with_emphasis(tok, "(" + "red cat " * 60 + ")")
    assert ids.shape == w.shape == (1, 77) and ids[0, -1] == EOS_TOKEN_ID
    assert w[0, 1:76].eq(torch.tensor(1.1)).all() and w[0, 0] == w[0, 76] == 1.0


def test_emphasis_rejects_bad_arguments(clip):
    tok, enc = clip
    with pytest.raises(ValueError, match="emphasis"):
        A.encode_prompt_with_emphasis(tok, enc, "a", emphasis="strong")
    with pytest.raises(TypeError, match="text_encoder"):
        A.encode_prompt_with_emphasis(tok, torch.nn.Linear(2, 2), "a")
    with pytest.raises(TypeError, match=r"prompts\[1\]"):
        A.encode_prompt_with_emphasis(tok, enc, ["a", 3])
    with pytest.raises(TypeError, match="tokenizer"):
        A.tokenize_with_emphasis(object(), "a")
    with pytest.raises(ValueError, match="weights"):
        A.apply_emphasis(torch.randn(2, 77, 8), torch.ones(2, 76))
    with pytest.raises(TypeError, match="text"):
        A.parse_prompt_attention(["a"])
    with pytest.raises(ValueError, match="emphasis weight '1.2.3'"):
        A.parse_prompt_attention("a (cat:1.2.3)")


# --------------------------------------------------------------------------- s_min_uncond


class CountingDenoiser:
    """A smooth random-ish denoiser that records (timestep, rows, contexts) of every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, context):
        self.calls.append((int(t[0]), x.shape[0], context))
        return 0.3 * x + context.mean(dim=(1, 2)).view(-1, 1, 1, 1) + t.view(-1, 1, 1, 1) / 50


SCHEDULE = NoiseSchedule(num_train_timesteps=20, beta_start=0.01, beta_end=0.3)  # σ from 4.7 to 0.1 in 10 steps
STEPS = 10


def _run(guider, cfg_mode="two_pass", seed=0):
    g = torch.Generator().manual_seed(seed)
    cond, neg = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    model = CountingDenoiser()
    x = ConditionalDDIMSampler(model, SCHEDULE, cfg_mode=cfg_mode).sample(
        (2, 3, 4, 4), cond, neg, guider, STEPS, latents=torch.randn(2, 3, 4, 4, generator=g), progress=False)
    return x, model, cond


def _a1111_skipped(s_min_uncond, all_steps=False):
    """The steps modules/sd_samplers_cfg_denoiser.py skips, written out as there:
    `(self.step % 2 or opts.s_min_uncond_all) and s_min_uncond > 0 and sigma[0] < s_min_uncond`,
    with k-diffusion's sigma = sqrt((1 - alphas_cumprod) / alphas_cumprod)."""
    skipped = []
    for step, t in enumerate(SCHEDULE.timesteps(STEPS, "leading", 0).tolist()):
        a = SCHEDULE.alphas_cumprod[t].item()
        sigma = ((1 - a) / a) ** 0.5
        if (step % 2 or all_steps) and s_min_uncond > 0 and sigma < s_min_uncond:
            skipped.append(step)
    return skipped


def test_k_diffusion_sigma_of_sd_is_the_known_range():
    a = sd_noise_schedule().alphas_cumprod
    assert A.k_diffusion_sigma(a[999].item()) == pytest.approx(14.6146, abs=1e-3)  # k-diffusion's sigma_max
    assert A.k_diffusion_sigma(a[0]).item() == pytest.approx(0.0292, abs=1e-4)  # sigma_min


def test_s_min_uncond_zero_is_plain_cfg():
    ours, model, _ = _run(A.MinUncondGuidance(5.0, s_min_uncond=0.0))
    theirs, _, _ = _run(ClassifierFreeGuidance(5.0))
    assert torch.equal(ours, theirs) and len(model.calls) == 2 * STEPS


@pytest.mark.parametrize("all_steps", [False, True])
def test_skips_exactly_the_steps_of_the_a1111_rule(all_steps):
    guider = A.MinUncondGuidance(5.0, s_min_uncond=1.5, all_steps=all_steps)
    _, model, cond = _run(guider)
    expected = _a1111_skipped(1.5, all_steps)
    assert expected == ([4, 5, 6, 7, 8, 9] if all_steps else [5, 7, 9])  # step 3 is odd but σ = 1.77
    assert guider.skipped_indices == expected and guider.skipped_steps == len(expected)
    timesteps = SCHEDULE.timesteps(STEPS, "leading", 0).tolist()
    for i, t in enumerate(timesteps):  # one call, on the prompt, at a skipped step; two elsewhere
        contexts = [c for tt, _, c in model.calls if tt == t]
        assert len(contexts) == (1 if i in expected else 2)
        assert contexts[0] is cond
    _run(guider, seed=1)  # reset() at the start of every sampling call: not accumulated
    assert guider.skipped_steps == len(expected)


def test_batched_mode_halves_the_rows_of_skipped_steps():
    _, model, _ = _run(A.MinUncondGuidance(5.0, s_min_uncond=1.5), cfg_mode="batched")
    assert [rows for _, rows, _ in model.calls] == [2 if i in (5, 7, 9) else 4 for i in range(STEPS)]


def test_a_skipped_step_is_the_conditional_prediction():
    model, x = CountingDenoiser(), torch.randn(2, 3, 4, 4)
    cond, neg = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    guider = A.MinUncondGuidance(7.0, s_min_uncond=1.0)
    pc, pu = model(x, torch.full((2,), 2), cond), model(x, torch.full((2,), 2), neg)
    for index, expected in ((1, pc), (0, pu + 7.0 * (pc - pu)), (2, pu + 7.0 * (pc - pu))):
        step = GuidanceStep(x, 2, index, STEPS, SCHEDULE.alphas_cumprod[2], cond, neg, model)  # σ = 0.28
        torch.testing.assert_close(guider(step), expected)
    guider.reset()
    assert guider.skipped_steps == 0
    no_cfg = A.MinUncondGuidance(1.0, s_min_uncond=10.0)  # γ = 1 never runs ε_u: nothing to skip
    no_cfg(GuidanceStep(x, 2, 1, STEPS, SCHEDULE.alphas_cumprod[2], cond, neg, model))
    assert no_cfg.skipped_steps == 0


def test_min_uncond_rejects_bad_arguments():
    with pytest.raises(ValueError, match="s_min_uncond"):
        A.MinUncondGuidance(5.0, s_min_uncond=-1.0)
    with pytest.raises(TypeError, match="s_min_uncond"):
        A.MinUncondGuidance(5.0, s_min_uncond="1")
    with pytest.raises(TypeError, match="all_steps"):
        A.MinUncondGuidance(5.0, s_min_uncond=1.0, all_steps=1)
    with pytest.raises(ValueError, match="guidance_scale"):
        A.MinUncondGuidance(-2.0, s_min_uncond=1.0)
    with pytest.raises(ValueError, match="alpha_cumprod"):
        A.k_diffusion_sigma(0.0)
