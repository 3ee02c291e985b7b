"""tutorial_lib.clip_text: the course's CLIP text transformer equals transformers.CLIPTextModel."""

import json
import os
import pickle
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

from tutorial_lib import pretrained as P  # noqa: E402
from tutorial_lib.clip_text import CLIPTextEncoder, CLIPTextModelConfig, CLIPTextOutput  # noqa: E402
from tutorial_lib.encoder_configs import tiny_clip_text_config  # noqa: E402
from tutorial_lib.text import clip_hidden_states, encode_prompt  # noqa: E402
from tutorial_lib.tokenizer import load_clip_tokenizer  # noqa: E402

SHIPPED_CONFIG = P.MODELS_DIR / "text_encoder_config.json"
SHIPPED_WEIGHTS = P.MODELS_DIR / "text_encoder.safetensors"
PROMPTS = [
    "",
    "a cat",
    "a large red circle in the top left",
    "a small blue square below a green triangle, on a white background, drawn with thick lines " * 3,
]


@pytest.fixture(scope="module")
def tok():
    return load_clip_tokenizer()


@pytest.fixture(scope="module")
def batch(tok):
    return tok(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")


def _pair(config: CLIPTextConfig, seed: int = 0, state: dict | None = None):
    """transformers' model (random, seeded, or ``state``) and the course's with the same weights."""
    torch.manual_seed(seed)
    ref = CLIPTextModel(config).eval()
    if state is not None:
        ref.load_state_dict(state, strict=True)
    ours = CLIPTextEncoder(CLIPTextModelConfig.from_dict(config.to_dict())).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def _assert_same_outputs(ref, ours, input_ids, attention_mask):
    with torch.no_grad():
        r = ref(input_ids, attention_mask=attention_mask, output_hidden_states=True)
        o = ours(input_ids, attention_mask=attention_mask, output_hidden_states=True)
    assert _max_diff(r.last_hidden_state, o.last_hidden_state) <= 1e-6
    assert _max_diff(r.pooler_output, o.pooler_output) <= 1e-6
    assert len(r.hidden_states) == len(o.hidden_states) == ref.config.num_hidden_layers + 1
    for i, (a, b) in enumerate(zip(r.hidden_states, o.hidden_states, strict=True)):
        assert _max_diff(a, b) <= 1e-6, i


CONFIGS = {
    "tiny": dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4),
    "tiny-gelu": dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, hidden_act="gelu",
                      intermediate_size=40),
    "tiny-legacy-eos": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, eos_token_id=2),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("masked", [False, True])
def test_parity_with_transformers_on_random_tiny_configs(name, masked, batch):
    ref, ours = _pair(tiny_clip_text_config(**CONFIGS[name]), seed=len(name))
    _assert_same_outputs(ref, ours, batch.input_ids, batch.attention_mask if masked else None)


@pytest.mark.parametrize("masked", [False, True])
def test_parity_with_transformers_on_the_shipped_encoder(masked, batch):
    config = CLIPTextConfig.from_dict(json.loads(SHIPPED_CONFIG.read_text()))
    ref, ours = _pair(config, state=load_file(str(SHIPPED_WEIGHTS)))
    _assert_same_outputs(ref, ours, batch.input_ids, batch.attention_mask if masked else None)
    short = batch.input_ids[:, :12]  # shorter sequences (no padding to 77) agree too
    _assert_same_outputs(ref, ours, short, batch.attention_mask[:, :12] if masked else None)


def test_state_dict_keys_and_buffers_are_transformers_and_shipped_weights_load_strict():
    config = CLIPTextConfig.from_dict(json.loads(SHIPPED_CONFIG.read_text()))
    ref = CLIPTextModel(config)
    ours = CLIPTextEncoder(CLIPTextModelConfig.from_dict(config.to_dict()))
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in ref.named_buffers()] == ["embeddings.position_ids"]
    assert all(ours.state_dict()[k].shape == v.shape for k, v in ref.state_dict().items())
    ours.load_state_dict(load_file(str(SHIPPED_WEIGHTS)), strict=True)
    assert len(ours.encoder.layers) == config.num_hidden_layers


def test_load_pretrained_builds_the_course_class(batch):
    encoder = P.load_pretrained(classifiers=False).text_encoder
    assert type(encoder) is CLIPTextEncoder and not encoder.training
    stored = load_file(str(SHIPPED_WEIGHTS))
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in stored.items())
    assert torch.equal(encoder.embeddings.position_ids, torch.arange(77)[None])


def test_encode_prompt_and_clip_skip_match_transformers(tok):
    ref, ours = _pair(tiny_clip_text_config(num_hidden_layers=3), seed=5)
    for clip_skip in (None, 1, 2):
        a = encode_prompt(tok, ref, ["a red circle", "a cat"], clip_skip=clip_skip)
        b = encode_prompt(tok, ours, ["a red circle", "a cat"], clip_skip=clip_skip)
        for x, y in zip(a, b, strict=True):
            assert _max_diff(x, y) <= 1e-6
    ids = tok(["a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert clip_hidden_states(ours, ids, clip_skip=1).shape == (1, 77, 32)


def test_output_indexes_like_transformers(batch):
    ref, ours = _pair(tiny_clip_text_config(), seed=1)
    with torch.no_grad():
        r, o = ref(batch.input_ids), ours(batch.input_ids)
        rh, oh = ref(batch.input_ids, output_hidden_states=True), ours(batch.input_ids, output_hidden_states=True)
    assert isinstance(o, CLIPTextOutput) and o.hidden_states is None
    assert len(o.to_tuple()) == len(r.to_tuple()) == 2 and len(oh.to_tuple()) == len(rh.to_tuple()) == 3
    assert torch.equal(o[0], o.last_hidden_state) and torch.equal(o[1], o["pooler_output"])
    assert _max_diff(o[0], r[0]) <= 1e-6 and _max_diff(oh[-1][0], rh[-1][0]) <= 1e-6


def test_config_reads_transformers_json_and_writes_json_transformers_reads():
    d = json.loads(SHIPPED_CONFIG.read_text())  # the full JSON transformers wrote: unknown keys ignored
    cfg = CLIPTextModelConfig.from_dict(d)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.eos_token_id) == (64, 2, 49407)
    back = CLIPTextConfig.from_dict(cfg.to_dict())
    for key, value in cfg.to_dict().items():
        assert getattr(back, key) == value, key
    assert CLIPTextModelConfig.from_dict(cfg.to_dict()) == cfg
    defaults = CLIPTextConfig()
    for key, value in CLIPTextModelConfig().to_dict().items():
        assert getattr(defaults, key) == value, key
    with pytest.raises(ValueError, match="hidden_act"):
        CLIPTextModelConfig(hidden_act="relu")
    with pytest.raises(ValueError, match="divisible"):
        CLIPTextModelConfig(hidden_size=30, num_attention_heads=4)


def test_random_init_is_finite_trainable_and_seeded():
    cfg = CLIPTextModelConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    torch.manual_seed(0)
    a = CLIPTextEncoder(cfg)
    torch.manual_seed(0)
    b = CLIPTextEncoder(cfg)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert 0.01 < a.embeddings.token_embedding.weight.std().item() < 0.03  # N(0, 0.02) as transformers
    assert torch.equal(a.final_layer_norm.weight, torch.ones(16))
    ids = torch.randint(0, 49406, (2, 9))
    ids[:, -1] = 49407
    assert torch.equal(pickle.loads(pickle.dumps(a))(ids).pooler_output, a(ids).pooler_output)
    a.train()(ids).pooler_output.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in a.parameters())


def test_bad_inputs_name_input_ids():
    model = CLIPTextEncoder(CLIPTextModelConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                                num_attention_heads=2))
    ids = torch.full((2, 5), 49407)
    with pytest.raises(TypeError, match="input_ids"):
        model(ids.float())
    with pytest.raises(TypeError, match="input_ids"):
        model(ids.tolist())
    with pytest.raises(ValueError, match=r"input_ids.*\(B, L\)"):
        model(ids[0])
    with pytest.raises(ValueError, match="input_ids"):
        model(torch.full((1, 78), 49407))
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids, attention_mask=torch.ones(2, 4))


def test_load_pretrained_and_a_prompt_do_not_import_transformers_modeling_code():
    # The property that makes `load_pretrained()` fast; measured by benchmarks/rows_pretrained.py.
    program = (
        "import sys, torch\n"
        "import tutorial_lib.text\n"
        "assert 'transformers' not in sys.modules, 'import tutorial_lib.text imported transformers'\n"
        "from tutorial_lib.pretrained import load_pretrained\n"
        "m = load_pretrained()\n"
        "assert 'transformers.modeling_utils' not in sys.modules, 'load_pretrained'\n"
        "assert 'torch._dynamo' not in sys.modules, 'load_pretrained imported torch._dynamo'\n"
        "assert 'sympy' not in sys.modules, 'load_pretrained imported sympy (a meta-device op?)'\n"
        "m = load_pretrained(world='scenes')\n"
        "assert 'sympy' not in sys.modules, 'load_pretrained(world=scenes) imported sympy'\n"
        "m.encode(['a red circle'])\n"
        "assert 'transformers.modeling_utils' not in sys.modules, 'encode'\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
