"""Each model trains for a handful of steps and its loss goes down (tiny configs, seconds)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tutorial_lib import train as T
from tutorial_lib.schedule import NoiseSchedule

TINY_DENOISER = dict(
    steps=30, batch_size=16, lr=3e-3, warmup_steps=5, image_size=16, checkpoint_every=10, log_every=5,
    unet={"base_channels": 8, "channel_mults": [1, 2], "attention_levels": [False, True],
          "num_heads": 2, "time_embed_dim": 16},
    text_encoder={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2},
    autocast="fp32", num_threads=1,
)


def _mean(xs):
    return sum(xs) / len(xs)


def test_configs_exist_and_build():
    for model in T.MODELS:
        for name in ("full", "fast"):
            cfg = T.get_config(model, name)
            assert cfg.steps > 0
    cfg = T.get_config("denoiser", "fast")
    unet, te, schedule = T.build_denoiser(cfg)
    assert unet.context_dim == te.config.hidden_size
    assert isinstance(schedule, NoiseSchedule)
    with pytest.raises(ValueError, match="config"):
        T.get_config("denoiser", "huge")
    with pytest.raises(ValueError, match="model"):
        T.get_config("vae")


def test_lr_schedule():
    assert T._lr_at(0, 100, 1.0, 10, 0.1) == pytest.approx(0.1)
    assert T._lr_at(10, 100, 1.0, 10, 0.1) == pytest.approx(1.0)
    assert T._lr_at(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)
    assert T._lr_at(50, 100, 1.0, 10, 1.0) == pytest.approx(1.0)  # constant after warm-up


def test_denoiser_loss_goes_down_checkpoints_and_resumes(tmp_path):
    cfg = T.DenoiserTrainConfig(**TINY_DENOISER)
    b = tmp_path / "b"
    res = T.train_denoiser(cfg, b, progress=False)
    losses = res["losses"]
    assert len(losses) == cfg.steps
    assert _mean(losses[-10:]) < 0.8 * _mean(losses[:5])
    final = b / "final"
    for name in ("unet.safetensors", "text_encoder.safetensors", "unet_config.json",
                 "text_encoder_config.json", "schedule.json", "denoiser_train_config.json"):
        assert (final / name).is_file(), name
    assert json.loads((b / "train_config.json").read_text())["steps"] == cfg.steps
    assert "conv_in.weight" in load_file(str(final / "unet.safetensors"))
    # Resume: a run stopped at step 20 and resumed equals one that ran straight through.
    a = tmp_path / "a"
    T.train_denoiser(cfg, a, progress=False, max_steps=20)
    T.train_denoiser(cfg, a, progress=False, resume=True)
    wa = load_file(str(a / "final" / "unet.safetensors"))
    wb = load_file(str(b / "final" / "unet.safetensors"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    # Export from a checkpoint (a run stopped early).
    out = T.export_denoiser_checkpoint(a, tmp_path / "exported")
    assert json.loads((out / "checkpoint_info.json").read_text())["step"] == cfg.steps


def test_caption_aux_loss_reads_only_stated_facts():
    from tutorial_lib import shapes
    torch.manual_seed(0)
    head = torch.nn.Linear(8, sum(shapes.NUM_CLASSES.values()))
    pooled = torch.randn(4, 8)
    labels = {k: torch.zeros(4, dtype=torch.long) for k in shapes.ATTRIBUTES}
    none = {k: torch.zeros(4, dtype=torch.bool) for k in shapes.ATTRIBUTES}
    assert T.caption_aux_loss(head, pooled, shapes.caption_targets(labels, none)).item() == 0.0
    only_colour = {**none, "colour": torch.tensor([True, False, False, False])}
    expected = torch.nn.functional.cross_entropy(head(pooled[:1])[:, :6], labels["colour"][:1]) / 4
    assert torch.allclose(T.caption_aux_loss(head, pooled, shapes.caption_targets(labels, only_colour)), expected)


def test_denoiser_batch_drops_captions_to_the_empty_prompt_and_unstates_their_targets():
    cfg = T.DenoiserTrainConfig(**{**TINY_DENOISER, "world": "scenes", "p_uncond": 0.5})
    images, captions, targets = T.denoiser_batch(cfg, torch.Generator().manual_seed(0), 64)
    assert images.shape == (64, 3, cfg.image_size, cfg.image_size)
    dropped = torch.tensor([c == "" for c in captions])
    assert 0 < int(dropped.sum()) < 64
    assert not any(stated[dropped].any() for _, _, stated in targets.values())
    assert targets["kind"][2][~dropped].all()


def test_scenes_denoiser_trains_with_the_text_aux_loss(tmp_path):
    cfg = T.DenoiserTrainConfig(**{**TINY_DENOISER, "world": "scenes", "steps": 6, "text_aux_weight": 0.5})
    res = T.train_denoiser(cfg, tmp_path, progress=False)
    assert res["steps"] == 6 and (tmp_path / "final" / "unet.safetensors").is_file()


def test_text_aux_loss_trains_and_resumes(tmp_path):
    cfg = T.DenoiserTrainConfig(**{**TINY_DENOISER, "steps": 12, "text_aux_weight": 0.5})
    res = T.train_denoiser(cfg, tmp_path / "b", progress=False)
    assert _mean(res["losses"][-4:]) < _mean(res["losses"][:4])
    T.train_denoiser(cfg, tmp_path / "a", progress=False, max_steps=10)
    T.train_denoiser(cfg, tmp_path / "a", progress=False, resume=True)
    wa = load_file(str(tmp_path / "a" / "final" / "unet.safetensors"))
    wb = load_file(str(tmp_path / "b" / "final" / "unet.safetensors"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    # the head is a training device only: nothing of it is exported
    assert not any("aux" in f.name for f in (tmp_path / "b" / "final").iterdir())


def test_fast_config_starts_from_the_shipped_text_encoder_and_keeps_it_frozen(tmp_path):
    from tutorial_lib.pretrained import MODELS_DIR

    shipped = load_file(str(MODELS_DIR / "text_encoder.safetensors"))
    cfg = T.get_config("denoiser", "fast")
    _, te, _ = T.build_denoiser(cfg)
    assert all(torch.equal(te.state_dict()[k], v) for k, v in shipped.items())
    assert not any(p.requires_grad for p in te.parameters())
    # a few steps at the fast config's width, tiny U-Net and images: the encoder does not move
    small = {k: v for k, v in TINY_DENOISER.items() if k != "text_encoder"}  # the shipped encoder's shape
    small.update(text_encoder_init="shipped", freeze_text_encoder=True, steps=3)
    T.train_denoiser(T.DenoiserTrainConfig(**small), tmp_path / "f", progress=False)
    after = load_file(str(tmp_path / "f" / "final" / "text_encoder.safetensors"))
    assert all(torch.equal(after[k], v) for k, v in shipped.items())
    with pytest.raises(ValueError, match="text_encoder_init"):
        T.build_denoiser(T.DenoiserTrainConfig(**dict(TINY_DENOISER, text_encoder_init="hub")))


def test_null_condition_is_the_encoded_empty_prompt(tmp_path, monkeypatch):
    seen = []
    orig = T._Tokens.__call__

    def spy(self, captions):
        seen.extend(captions)
        return orig(self, captions)

    monkeypatch.setattr(T._Tokens, "__call__", spy)
    cfg = T.DenoiserTrainConfig(**{**TINY_DENOISER, "steps": 4, "p_uncond": 0.5})
    T.train_denoiser(cfg, tmp_path, progress=False)
    assert "" in seen and any(c.startswith("a ") for c in seen)


@pytest.mark.parametrize("noisy", [False, True])
def test_classifier_loss_goes_down(tmp_path, noisy):
    cfg = T.ClassifierTrainConfig(
        noisy=noisy, steps=30, batch_size=32, lr=3e-3, warmup_steps=3, image_size=16, eval_size=64,
        log_every=5, checkpoint_every=10, num_threads=1,
        classifier={"channels": [8, 16], "time_dim": 16, "time_conditioned": noisy},
    )
    name = "noisy_classifier" if noisy else "judge"
    res = T.train_classifier(cfg, tmp_path, name=name, progress=False)
    assert _mean(res["losses"][-5:]) < 0.9 * _mean(res["losses"][:3])
    assert (tmp_path / "final" / f"{name}.safetensors").is_file()
    assert ("accuracy_by_t" if noisy else "accuracy") in res


def test_cli_runs_a_few_steps(tmp_path):
    rc = T.main(["judge", "--config", "fast", "--steps", "2", "--batch-size", "8", "--no-progress",
                 "--eval-size", "16", "--out", str(tmp_path)])
    assert rc == 0 and (tmp_path / "summary.json").is_file()
