"""Shipped weights: loading, sha256 verification, clear errors for tampered or truncated files."""

import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tutorial_lib import pretrained as P
from tutorial_lib import train as T
from tutorial_lib.classifiers import AttributeClassifier
from tutorial_lib.guiders import ClassifierFreeGuidance
from tutorial_lib.schedule import NoiseSchedule

SHIPPED = all((P.MODELS_DIR / f).is_file() for f in P.WEIGHT_FILES) and (P.MODELS_DIR / P.MANIFEST_NAME).is_file()


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A complete model folder with tiny weights (two training steps each)."""
    root = tmp_path_factory.mktemp("tiny")
    T.train_denoiser(T.DenoiserTrainConfig(
        steps=2, batch_size=4, image_size=16, autocast="fp32", num_threads=1,
        unet={"base_channels": 8, "channel_mults": [1, 2], "attention_levels": [False, True],
              "num_heads": 2, "time_embed_dim": 16},
        text_encoder={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2},
    ), root / "den", progress=False)
    for name, noisy in (("judge", False), ("noisy_classifier", True)):
        T.train_classifier(T.ClassifierTrainConfig(
            noisy=noisy, steps=2, batch_size=4, image_size=16, eval_size=8, num_threads=1,
            classifier={"channels": [8, 16], "time_dim": 16},
        ), root / name, name=name, progress=False)
    folder = root / "models"
    P.export_assets(root / "den" / "final", root / "judge" / "final", root / "noisy_classifier" / "final",
                    directory=folder, info={"note": "tiny test models"})
    return folder


def _copy(src, tmp_path):
    dst = tmp_path / "models"
    shutil.copytree(src, dst)
    return dst


def test_manifest_lists_every_file_and_verifies(tiny_models):
    status = P.verify_assets(tiny_models)
    assert status and all(v == "ok" for v in status.values()), status
    for f in P.WEIGHT_FILES:
        assert status[f] == "ok"
    text = (tiny_models / P.MANIFEST_NAME).read_text()
    assert "training.json" in text and P.MANIFEST_NAME not in text


def test_load_pretrained_returns_eval_models(tiny_models):
    m = P.load_pretrained(tiny_models)
    for module in (m.text_encoder, m.unet, m.judge, m.noisy_classifier):
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
    assert isinstance(m.schedule, NoiseSchedule)
    assert isinstance(m.judge, AttributeClassifier) and m.noisy_classifier.time_conditioned
    assert m.info == {"note": "tiny test models"}
    cond, uncond = m.encode(["a red circle", "a small square"])
    assert cond.shape == (2, 77, 16) and uncond.shape == (2, 77, 16)
    assert not torch.allclose(uncond, torch.zeros_like(uncond))  # the null condition is encode("")
    x = m.generate(["a red circle"], guider=ClassifierFreeGuidance(2.0), num_inference_steps=2,
                   generator=torch.Generator().manual_seed(0))
    assert x.shape == (1, 3, 16, 16) and torch.isfinite(x).all()
    x_T = torch.randn((1, 3, 16, 16), generator=torch.Generator().manual_seed(0))  # the sampler's first draw
    same = m.generate(["a red circle"], guider=ClassifierFreeGuidance(2.0), num_inference_steps=2, latents=x_T)
    assert torch.equal(same, x)


def test_text_encoder_is_the_course_class_and_the_tokenizer_loads_on_first_access(tiny_models):
    from tutorial_lib.clip_text import CLIPTextEncoder

    m = P.load_pretrained(tiny_models, classifiers=False)
    assert type(m.text_encoder) is CLIPTextEncoder  # trained as transformers' CLIPTextModel: same names
    assert "tokenizer" not in vars(m)  # not loaded yet
    tok = m.tokenizer
    assert tok is m.tokenizer and tok("a cat").input_ids == [49406, 320, 2368, 49407]


def test_tampered_file_fails_naming_it(tiny_models, tmp_path):
    folder = _copy(tiny_models, tmp_path)
    path = folder / "unet.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip one byte in the tensor data
    path.write_bytes(bytes(data))
    status = P.verify_assets(folder)
    assert status["unet.safetensors"].startswith("sha256 mismatch")
    assert all(v == "ok" for k, v in status.items() if k != "unet.safetensors")
    with pytest.raises(P.AssetVerificationError, match="unet.safetensors"):
        P.load_pretrained(folder)


def test_truncated_file_fails_naming_it(tiny_models, tmp_path):
    folder = _copy(tiny_models, tmp_path)
    path = folder / "text_encoder.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert P.verify_assets(folder)["text_encoder.safetensors"].startswith("truncated")
    with pytest.raises(P.AssetVerificationError, match=r"text_encoder\.safetensors: truncated"):
        P.load_pretrained(folder)
    # Without verification the loader still fails clearly, naming the file.
    with pytest.raises(P.AssetVerificationError, match="text_encoder.safetensors"):
        P.load_pretrained(folder, verify=False)


def test_missing_file_and_missing_manifest(tiny_models, tmp_path):
    folder = _copy(tiny_models, tmp_path)
    (folder / "judge_config.json").unlink()
    assert P.verify_assets(folder)["judge_config.json"] == "missing"
    with pytest.raises(P.AssetVerificationError, match="judge_config.json"):
        P.load_pretrained(folder)
    P.load_pretrained(folder, classifiers=False)  # the denoiser alone still loads
    (folder / P.MANIFEST_NAME).unlink()
    with pytest.raises(P.AssetVerificationError, match="MANIFEST.sha256"):
        P.verify_assets(folder)


def test_edited_config_fails_naming_it(tiny_models, tmp_path):
    folder = _copy(tiny_models, tmp_path)
    cfg = folder / "unet_config.json"
    cfg.write_text(cfg.read_text().replace('"num_heads": 2', '"num_heads": 1'))
    with pytest.raises(P.AssetVerificationError, match="unet_config.json"):
        P.load_pretrained(folder)


def test_no_pickles_in_the_model_folder(tiny_models):
    for p in tiny_models.iterdir():
        assert p.suffix in (".safetensors", ".json", ".sha256"), p.name


@pytest.mark.skipif(not SHIPPED, reason="the trained weights are not in the package yet")
def test_shipped_assets_verify_and_load():
    status = P.verify_assets()
    assert all(v == "ok" for v in status.values()), status
    m = P.load_pretrained()
    assert m.unet.config.sample_size >= 24 and m.weak_unet is None
    files = [p for p in P.MODELS_DIR.rglob("*") if p.is_file()]
    for p in files:  # no pickles anywhere, the scenes folder and its snapshots included
        assert p.suffix in (".safetensors", ".json", ".sha256"), p
    assert sum(p.stat().st_size for p in files) < 48 * 2**20  # every shipped model together


@pytest.mark.skipif(not (P.SCENES_DIR / P.MANIFEST_NAME).is_file(), reason="the scenes models are not shipped yet")
def test_shipped_scenes_models_verify_and_load():
    from tutorial_lib.classifiers import SceneClassifier

    status = P.verify_assets(P.SCENES_DIR)
    assert all(v == "ok" for v in status.values()), status
    m = P.load_pretrained(world="scenes")
    assert isinstance(m.judge, SceneClassifier) and m.judge.config.time_conditioned is False
    assert isinstance(m.noisy_classifier, SceneClassifier) and m.noisy_classifier.config.time_conditioned
    assert m.weak_unet is not None and m.weak_unet.config.base_channels < m.unet.config.base_channels
    assert m.weak_unet.config.context_dim == m.unet.config.context_dim  # they share the text encoder
    with pytest.raises(ValueError, match="world must be one of"):
        P.load_pretrained(world="faces")


def _flip_byte_keep_stat(path, offset=-10):
    """Modify one byte in place, keeping the size and restoring the modification time."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_file_changed_after_a_load_fails_in_the_same_process(tiny_models, tmp_path):
    # No hash cache may hide a change, even one that keeps the size and the mtime.
    folder = _copy(tiny_models, tmp_path)
    P.load_pretrained(folder)
    _flip_byte_keep_stat(folder / "unet.safetensors")
    with pytest.raises(P.AssetVerificationError, match="unet.safetensors: sha256 mismatch"):
        P.load_pretrained(folder)
    assert P.verify_assets(folder)["unet.safetensors"].startswith("sha256 mismatch")


def test_loaded_weights_are_the_files_and_do_not_map_them(tiny_models, tmp_path):
    folder = _copy(tiny_models, tmp_path)
    m = P.load_pretrained(folder)
    for module, name in ((m.unet, "unet"), (m.text_encoder, "text_encoder"), (m.judge, "judge")):
        stored = load_file(str(folder / f"{name}.safetensors"))
        state = module.state_dict()
        assert stored.keys() <= state.keys()
        for key, tensor in stored.items():
            assert torch.equal(state[key], tensor), (name, key)
        assert not any(t.is_meta for t in state.values())
    before = {k: v.clone() for k, v in m.unet.state_dict().items()}
    path = folder / "unet.safetensors"
    path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))  # the file changes under the model
    assert all(torch.equal(v, before[k]) for k, v in m.unet.state_dict().items())


def test_loading_does_not_move_the_global_rng(tiny_models):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    P.load_pretrained(tiny_models)
    assert torch.equal(torch.rand(3), expected)


def test_mis_shaped_weights_fail_naming_the_file_without_verification(tiny_models, tmp_path):
    folder = _copy(tiny_models, tmp_path)
    cfg = folder / "unet_config.json"
    cfg.write_text(cfg.read_text().replace('"base_channels": 8', '"base_channels": 16'))
    with pytest.raises(P.AssetVerificationError, match=r"unet\.safetensors does not match its config"):
        P.load_pretrained(folder, verify=False)
