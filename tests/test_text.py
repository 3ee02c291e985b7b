"""Tests for notebook 02's modules: the real CLIP tokenizer offline (tutorial_lib.tokenizer), the
encoder configs and loading (encoder_configs, text_loading), encoder outputs checked against
transformers itself and prompt encoding checked against diffusers (tutorial_lib.text).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    CLIPTextModel,
    CLIPTextModelWithProjection,
    T5EncoderModel,
)

from tutorial_lib import encoder_configs, text, text_loading  # noqa: E402
from tutorial_lib.encoder_configs import real_encoder_sizes, sdxl_context_widths  # noqa: E402
from tutorial_lib.text import (  # noqa: E402
    DualPromptEmbeds,
    clip_hidden_states,
    clip_pooled_output,
    encode_prompt,
    encode_prompt_dual,
    eos_positions,
)
from tutorial_lib.text_loading import EncoderNotAvailableError, describe, load_text_encoder  # noqa: E402
from tutorial_lib.tokenizer import (  # noqa: E402
    BOS_TOKEN_ID,
    CLIP_TOKENIZER_DIR,
    EOS_TOKEN_ID,
    load_byt5_tokenizer,
    load_clip_tokenizer,
    tokenize_prompts,
)

A_CAT = [49406, 320, 2368, 49407]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tok():
    return load_clip_tokenizer()


@pytest.fixture(scope="module")
def clip():
    return load_text_encoder("tiny-clip", seed=0)


@pytest.fixture(scope="module")
def clip_proj():
    return load_text_encoder("tiny-clip-projection", hidden_size=48, num_hidden_layers=3, seed=1)


@pytest.fixture(scope="module")
def diffusers_mod():
    return pytest.importorskip("diffusers")


# ---------------------------------------------------------------------------- tokenizer


def test_a_cat_is_padded_to_77_with_the_sd1_pad_id(tok):
    assert tok.model_max_length == 77
    assert len(tok) == 49408
    assert tok.pad_token_id == EOS_TOKEN_ID == 49407
    assert tok("a cat")["input_ids"] == A_CAT
    ids = tokenize_prompts(tok, "a cat")
    assert ids.shape == (1, 77) and ids.dtype == torch.long
    assert ids[0].tolist() == A_CAT + [49407] * 73


def test_more_known_ids(tok):
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    # case and whitespace are normalised
    assert tok("  A   CAT ")["input_ids"] == A_CAT
    assert tok.decode(A_CAT, skip_special_tokens=True) == "a cat"


def test_openclip_convention_pads_with_zero_side_by_side(tok):
    oc = load_clip_tokenizer("openclip")
    sd1_ids = tokenize_prompts(tok, ["a cat", "a photo of a cat"])
    oc_ids = tokenize_prompts(oc, ["a cat", "a photo of a cat"])
    assert oc.pad_token_id == 0
    assert oc_ids[0].tolist() == A_CAT + [0] * 73
    # identical up to and including the end token, only the padding differs
    for row in range(2):
        n = int(eos_positions(sd1_ids[row : row + 1])[0]) + 1
        assert torch.equal(sd1_ids[row, :n], oc_ids[row, :n])
        assert (sd1_ids[row, n:] == 49407).all() and (oc_ids[row, n:] == 0).all()
    # "!" inside a prompt keeps its ordinary BPE id (256 = "!</w>") as in open_clip ...
    assert oc("wow!")["input_ids"] == tok("wow!")["input_ids"] == [49406, 2781, 256, 49407]


def test_sdxl_tokenizer_2_quirk_turns_exclamation_marks_into_pads():
    # ... whereas the hub files of SD 2.x / SDXL tokenizer_2 register "!" as the pad
    # token, so a "!" in the prompt becomes id 0 (diffusers issue #4153).
    t2 = load_clip_tokenizer("sdxl_tokenizer_2")
    assert t2.pad_token_id == 0
    assert t2("wow!")["input_ids"] == [49406, 2781, 0, 49407]
    assert tokenize_prompts(t2, "a cat")[0].tolist() == A_CAT + [0] * 73


def test_truncation_at_77_keeps_the_end_token(tok):
    ids = tokenize_prompts(tok, ["cat " * 100, "a cat"])
    assert ids.shape == (2, 77)
    assert ids[0, 0] == BOS_TOKEN_ID and ids[0, -1] == EOS_TOKEN_ID
    assert (ids[0, 1:-1] == 2368).all()  # 75 "cat" tokens in between
    assert ids[1].tolist() == A_CAT + [49407] * 73


def test_assets_and_licence_are_shipped():
    vocab = json.loads((CLIP_TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408 and vocab["<|endoftext|>"] == 49407 and vocab["!"] == 0
    merges = (CLIP_TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version") and len(merges) == 1 + 48894
    licence = (CLIP_TOKENIZER_DIR / "LICENSE").read_text(encoding="utf-8")
    assert "Copyright (c) 2021 OpenAI" in licence and "MIT" in licence
    assert "Gabriel Ilharco" in licence  # open_clip's own notice


def test_tokenizer_bad_input(tok):
    with pytest.raises(ValueError, match="convention"):
        load_clip_tokenizer("sd3")
    with pytest.raises(ValueError, match="prompts must not be empty"):
        tokenize_prompts(tok, [])
    with pytest.raises(TypeError, match=r"prompts\[1\]"):
        tokenize_prompts(tok, ["a cat", 3])
    with pytest.raises(TypeError, match="prompts must be"):
        tokenize_prompts(tok, 3)


def test_byt5_tokenizer_works_offline():
    t5tok = load_byt5_tokenizer()
    assert t5tok("a cat")["input_ids"] == [100, 35, 102, 100, 119, 1]  # bytes + 3, then </s>
    assert len(t5tok) == 384 and t5tok.pad_token_id == 0
    ids = tokenize_prompts(t5tok, ["a cat", "a dog"])
    assert ids.shape == (2, 128)


# -------------------------------------------------------------------- real sizes (meta)


def test_real_encoder_sizes_are_pinned():
    rows = {r["name"]: r for r in real_encoder_sizes()}
    vit_l = rows["CLIP ViT-L/14 text"]
    big_g = rows["OpenCLIP ViT-bigG/14 text + projection"]
    t5 = rows["T5-XXL v1.1 encoder"]
    assert (vit_l["params"], vit_l["hidden_width"], vit_l["layers"], vit_l["heads"]) == (
        123_060_480,
        768,
        12,
        12,
    )
    assert (
        big_g["params"],
        big_g["hidden_width"],
        big_g["pooled_width"],
        big_g["layers"],
        big_g["heads"],
    ) == (694_659_840, 1280, 1280, 32, 20)
    assert (t5["params"], t5["hidden_width"], t5["layers"], t5["heads"]) == (
        4_762_310_656,
        4096,
        24,
        64,
    )
    assert vit_l["max_tokens"] == big_g["max_tokens"] == 77 and t5["max_tokens"] is None
    assert {r["model_class"] for r in rows.values()} == {
        "CLIPTextModel",
        "CLIPTextModelWithProjection",
        "T5EncoderModel",
    }
    for r in rows.values():
        assert set(r) >= {"name", "params", "hidden_width", "layers", "max_tokens", "tokenizer"}


def test_vit_l14_count_matches_the_closed_form():
    # embeddings + 12 x (attention 4 (D^2 + D) + MLP 2 D F + F + D + 2 layer norms) + final norm
    d, f, n_layers, vocab, pos = 768, 3072, 12, 49408, 77
    per_layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d
    assert vocab * d + pos * d + n_layers * per_layer + 2 * d == 123_060_480


def test_meta_models_allocate_nothing():
    model = encoder_configs.build_on_meta(encoder_configs.t5_v1_1_xxl_encoder_config(), T5EncoderModel)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert encoder_configs.t5_v1_1_xxl_encoder_config().is_gated_act
    assert encoder_configs.clip_vit_l14_text_config().hidden_act == "quick_gelu"
    assert encoder_configs.openclip_bigg14_text_config().hidden_act == "gelu"


def test_sdxl_widths_come_from_the_real_configs():
    assert sdxl_context_widths() == {
        "first_width": 768,
        "second_width": 1280,
        "context_dim": 2048,
        "pooled_dim": 1280,
    }


# ---------------------------------------------------------------------------- loading


def test_tiny_encoders_are_labelled_untrained_and_reproducible(clip):
    assert isinstance(clip, CLIPTextModel) and clip.is_pretrained is False
    assert "RANDOMLY INITIALISED" in describe(clip) and "CLIPTextModel" in describe(clip)
    state = torch.random.get_rng_state()
    again = load_text_encoder("tiny-clip", seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    for a, b in zip(clip.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    other = load_text_encoder("tiny-clip", seed=1)
    assert not torch.equal(
        other.embeddings.token_embedding.weight, clip.embeddings.token_embedding.weight
    )
    t5 = load_text_encoder("tiny-t5")
    assert isinstance(t5, T5EncoderModel) and t5.is_pretrained is False
    with pytest.raises(ValueError, match="builds a CLIPTextModel"):
        load_text_encoder("tiny-clip", model_class="t5")
    with pytest.raises(ValueError, match="model_class"):
        load_text_encoder("tiny-clip", model_class="bert")


def test_hub_id_offline_fails_fast_and_names_the_fallback(tmp_path, monkeypatch):
    start = time.perf_counter()
    with pytest.raises(EncoderNotAvailableError, match="tiny-clip") as info:
        load_text_encoder("openai/clip-vit-large-patch14", cache_dir=str(tmp_path))
    assert "allow_download" in str(info.value)
    assert isinstance(info.value, OSError)
    # allowed to download, but the environment says offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderNotAvailableError, match="HF_HUB_OFFLINE"):
        load_text_encoder(
            "openai/clip-vit-large-patch14", allow_download=True, cache_dir=str(tmp_path)
        )
    # allowed, not flagged offline, but the hub does not answer the quick check
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(text_loading, "_hub_reachable", lambda timeout: False)
    with pytest.raises(EncoderNotAvailableError, match="did not answer"):
        load_text_encoder(
            "openai/clip-vit-large-patch14", allow_download=True, cache_dir=str(tmp_path)
        )
    assert time.perf_counter() - start < 10


def test_reachability_check_uses_a_short_timeout(monkeypatch):
    seen = {}

    def fake_connect(address, timeout):
        seen.update(address=address, timeout=timeout)
        raise OSError("unreachable")

    monkeypatch.setattr(text_loading.socket, "create_connection", fake_connect)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example:8443")
    assert text_loading._hub_reachable(0.5) is False
    assert seen == {"address": ("hub.example", 8443), "timeout": 0.5}


def test_local_folder_uses_from_pretrained(tmp_path, clip_proj):
    clip_proj.save_pretrained(tmp_path / "te2")
    loaded = load_text_encoder(tmp_path / "te2")
    assert type(loaded) is CLIPTextModelWithProjection  # inferred from config.architectures
    assert loaded.is_pretrained is True and "weights loaded from" in describe(loaded)
    for a, b in zip(clip_proj.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    t5 = load_text_encoder("tiny-t5")
    t5.save_pretrained(tmp_path / "sd" / "text_encoder")
    assert type(load_text_encoder(tmp_path / "sd", subfolder="text_encoder")) is T5EncoderModel
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderNotAvailableError, match="tiny-clip"):
        load_text_encoder(tmp_path / "empty")


# ------------------------------------------------------------- what comes out of CLIP


def test_token_features_shape_and_padding_is_not_zero(tok, clip):
    ids = tokenize_prompts(tok, ["a cat", "a red circle in the top left"])
    feats = clip_hidden_states(clip, ids)
    assert feats.shape == (2, 77, 32)
    assert torch.equal(feats, clip(ids).last_hidden_state)
    pads = feats[0, 4:]  # positions after "a cat"'s end token
    assert pads.abs().amax(dim=-1).min() > 0.1  # no pad vector is zero ...
    assert torch.cdist(pads, pads).add(torch.eye(73) * 1e9).min() > 1e-3  # ... and all differ
    # the same pad position depends on the prompt (it has attended to it)
    assert not torch.allclose(feats[0, 40], feats[1, 40])
    # causal mask: token 0 (the start token) has seen nothing else, so it is prompt-independent
    torch.testing.assert_close(feats[0, 0], feats[1, 0])


@pytest.mark.parametrize("eos_token_id", [EOS_TOKEN_ID, 2])  # current and legacy configs
def test_pooled_vector_is_eos_state_not_token_zero(tok, eos_token_id):
    model = load_text_encoder("tiny-clip-projection", eos_token_id=eos_token_id, seed=3)
    ids = tokenize_prompts(tok, ["a cat", "a photo of a cat", "cat " * 100])  # SD1 pads: pad == eos
    assert eos_positions(ids, eos_token_id).tolist() == [3, 6, 76]
    out = model(ids)
    pooled = clip_pooled_output(out.last_hidden_state, ids, eos_token_id)
    ref = model.text_model(ids).pooler_output
    torch.testing.assert_close(pooled, ref)
    torch.testing.assert_close(model.text_projection(pooled), out.text_embeds)
    assert not torch.allclose(pooled, out.last_hidden_state[:, 0])
    assert not torch.allclose(pooled, out.last_hidden_state[:, -1])  # not the last pad either


def test_eos_positions_validation():
    with pytest.raises(ValueError, match="no eos_token_id"):
        eos_positions(torch.tensor([[49406, 320, 0]]))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        eos_positions(torch.tensor([49406, 49407]))
    with pytest.raises(TypeError, match="integer"):
        eos_positions(torch.zeros(1, 3))


def test_clip_skip_is_final_norm_of_an_earlier_layer(tok, clip_proj):
    ids = tokenize_prompts(tok, ["a cat", "a dog"])
    out = clip_proj(ids, output_hidden_states=True)
    assert len(out.hidden_states) == 3 + 1  # embeddings + one per layer
    torch.testing.assert_close(
        clip_hidden_states(clip_proj, ids, clip_skip=0), out.last_hidden_state
    )
    norm = clip_proj.text_model.final_layer_norm
    for k in (1, 2):
        torch.testing.assert_close(
            clip_hidden_states(clip_proj, ids, clip_skip=k), norm(out.hidden_states[-(k + 1)])
        )
    with pytest.raises(ValueError, match="clip_skip"):
        clip_hidden_states(clip_proj, ids, clip_skip=3)
    with pytest.raises(TypeError, match="clip_skip"):
        clip_hidden_states(clip_proj, ids, clip_skip=1.0)


# ------------------------------------------------------------------------ encode_prompt


def test_encode_prompt_negative_is_the_empty_prompt_not_zeros(tok, clip):
    cond, uncond = encode_prompt(tok, clip, ["a cat", "a dog"])
    assert cond.shape == uncond.shape == (2, 77, 32)
    empty = clip(tokenize_prompts(tok, ["", ""])).last_hidden_state
    torch.testing.assert_close(uncond, empty)
    assert uncond.abs().min() > 0 or uncond.abs().amax() > 0.1
    _, zeros = encode_prompt(tok, clip, ["a cat", "a dog"], force_zeros_for_empty_prompt=True)
    assert torch.equal(zeros, torch.zeros_like(cond))
    # force_zeros only replaces a *missing* negative prompt, as in SDXL's pipeline
    _, neg = encode_prompt(tok, clip, "a cat", "", force_zeros_for_empty_prompt=True)
    torch.testing.assert_close(neg, empty[:1])
    # one string applies to every prompt
    _, neg2 = encode_prompt(tok, clip, ["a cat", "a dog"], "blurry")
    torch.testing.assert_close(neg2[0], neg2[1])


def test_encode_prompt_validates_inputs(tok, clip):
    with pytest.raises(ValueError, match="negative_prompts has 1 entries but prompts has 2"):
        encode_prompt(tok, clip, ["a", "b"], ["c"])
    with pytest.raises(TypeError, match=r"negative_prompts\[0\]"):
        encode_prompt(tok, clip, ["a"], [None])
    with pytest.raises(TypeError, match="force_zeros_for_empty_prompt"):
        encode_prompt(tok, clip, "a", force_zeros_for_empty_prompt=1)
    with pytest.raises(ValueError, match="clip_skip"):
        encode_prompt(tok, clip, "a", clip_skip=5)
    with pytest.raises(TypeError, match="text_encoder"):
        encode_prompt(tok, torch.nn.Linear(2, 2), "a")
    with pytest.raises(ValueError, match="positions"):
        encode_prompt(tok, clip, "a", max_length=80)


def test_encode_prompt_with_t5():
    t5tok, t5 = load_byt5_tokenizer(model_max_length=16), load_text_encoder("tiny-t5")
    cond, uncond = encode_prompt(t5tok, t5, ["a cat", "a dog"])
    assert cond.shape == uncond.shape == (2, 16, 32)
    ids = tokenize_prompts(t5tok, ["a cat", "a dog"])
    torch.testing.assert_close(cond, t5(ids).last_hidden_state)
    with pytest.raises(ValueError, match="T5"):
        encode_prompt(t5tok, t5, "a cat", clip_skip=1)


def _sd_pipeline(diffusers_mod, tok, encoder):
    return diffusers_mod.StableDiffusionPipeline(
        vae=None,
        text_encoder=encoder,
        tokenizer=tok,
        unet=None,
        scheduler=diffusers_mod.DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def test_encode_prompt_matches_diffusers_sd(diffusers_mod, tok, clip):
    pipe = _sd_pipeline(diffusers_mod, tok, clip)
    prompts = ["a cat", "a large red circle in the top left"]
    ref = pipe.encode_prompt(prompts, "cpu", 1, True, None)
    ours = encode_prompt(tok, clip, prompts)
    torch.testing.assert_close(ours[0], ref[0])
    torch.testing.assert_close(ours[1], ref[1])
    ref = pipe.encode_prompt(prompts, "cpu", 1, True, ["blurry", "ugly"])
    torch.testing.assert_close(encode_prompt(tok, clip, prompts, ["blurry", "ugly"])[1], ref[1])


def test_clip_skip_matches_diffusers_sd(diffusers_mod, tok):
    encoder = load_text_encoder("tiny-clip", num_hidden_layers=3, seed=2)
    if not hasattr(encoder, "text_model"):
        # diffusers 0.42 reads `text_encoder.text_model.final_layer_norm`, the transformers 4
        # layout; transformers 5's CLIPTextModel holds `final_layer_norm` itself, so diffusers'
        # clip_skip path raises AttributeError. Expose the old name, bypassing module registration.
        encoder.__dict__["text_model"] = encoder
    pipe = _sd_pipeline(diffusers_mod, tok, encoder)
    for k in (1, 2):
        ref, _ = pipe.encode_prompt(["a cat"], "cpu", 1, True, None, clip_skip=k)
        torch.testing.assert_close(encode_prompt(tok, encoder, ["a cat"], clip_skip=k)[0], ref)


# ---------------------------------------------------------------------- SDXL dual encoding


def test_dual_encoding_matches_diffusers_sdxl(diffusers_mod, tok, clip_proj):
    tok2 = load_clip_tokenizer("sdxl_tokenizer_2")
    clip = load_text_encoder("tiny-clip", num_hidden_layers=3, seed=4)
    pipe = diffusers_mod.StableDiffusionXLPipeline(
        vae=None,
        text_encoder=clip,
        text_encoder_2=clip_proj,
        tokenizer=tok,
        tokenizer_2=tok2,
        unet=None,
        scheduler=diffusers_mod.DDIMScheduler(steps_offset=1, clip_sample=False),
        force_zeros_for_empty_prompt=True,
    )
    prompts = ["a cat", "a dog"]
    ours = encode_prompt_dual((tok, tok2), (clip, clip_proj), prompts)
    ref = pipe.encode_prompt(prompts, device="cpu", do_classifier_free_guidance=True)
    assert isinstance(ours, DualPromptEmbeds)
    assert ours.prompt_embeds.shape == (2, 77, 32 + 48)
    assert ours.pooled_prompt_embeds.shape == (2, 48)
    for mine, theirs in zip(
        (
            ours.prompt_embeds,
            ours.negative_prompt_embeds,
            ours.pooled_prompt_embeds,
            ours.negative_pooled_prompt_embeds,
        ),
        ref,
        strict=True,
    ):
        torch.testing.assert_close(mine, theirs)
    assert ours.negative_prompt_embeds.abs().max() == 0  # SDXL's zeros convention
    # with a negative prompt and clip_skip (diffusers applies clip_skip to the prompt only)
    ours = encode_prompt_dual((tok, tok2), (clip, clip_proj), prompts, "blurry", clip_skip=1)
    ref = pipe.encode_prompt(
        prompts,
        device="cpu",
        do_classifier_free_guidance=True,
        negative_prompt="blurry",
        clip_skip=1,
    )
    torch.testing.assert_close(ours.prompt_embeds, ref[0])
    torch.testing.assert_close(ours.pooled_prompt_embeds, ref[2])
    torch.testing.assert_close(ours.negative_pooled_prompt_embeds, ref[3])


def test_dual_encoding_pieces(tok, clip, clip_proj):
    tok2 = load_clip_tokenizer("openclip")
    out = encode_prompt_dual(
        (tok, tok2), (clip, clip_proj), "a cat", force_zeros_for_empty_prompt=False
    )
    ids1, ids2 = tokenize_prompts(tok, "a cat"), tokenize_prompts(tok2, "a cat")
    first = clip(ids1, output_hidden_states=True).hidden_states[-2]
    second = clip_proj(ids2, output_hidden_states=True)
    torch.testing.assert_close(
        out.prompt_embeds, torch.cat([first, second.hidden_states[-2]], dim=-1)
    )
    torch.testing.assert_close(out.pooled_prompt_embeds, second.text_embeds)
    empty = encode_prompt_dual(
        (tok, tok2), (clip, clip_proj), "", force_zeros_for_empty_prompt=False
    )
    torch.testing.assert_close(out.negative_prompt_embeds, empty.prompt_embeds)
    with pytest.raises(TypeError, match="CLIPTextModelWithProjection"):
        encode_prompt_dual((tok, tok2), (clip_proj, clip), "a cat")
    with pytest.raises(ValueError, match="exactly two"):
        encode_prompt_dual((tok,), (clip,), "a cat")
    with pytest.raises(ValueError, match="clip_skip"):  # tiny-clip has only 2 layers
        encode_prompt_dual((tok, tok2), (clip, clip_proj), "a cat", clip_skip=1)


def test_transformers_names_are_still_attributes_imported_lazily():
    import transformers

    from tutorial_lib.text import CLIPTextConfig as LazyConfig

    assert LazyConfig is transformers.CLIPTextConfig
    assert text.CLIPTextModel is CLIPTextModel and text.T5EncoderModel is T5EncoderModel
    with pytest.raises(AttributeError, match="no_such_name"):
        text.no_such_name  # noqa: B018


def test_text_re_exports_what_notebook_02_imports_from_it():
    from tutorial_lib import tokenizer

    assert all(hasattr(text, name) for name in text.__all__)
    assert text.load_clip_tokenizer is tokenizer.load_clip_tokenizer
    assert text.real_encoder_sizes is encoder_configs.real_encoder_sizes
    assert text.load_text_encoder is text_loading.load_text_encoder
