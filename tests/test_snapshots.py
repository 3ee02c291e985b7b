"""Training snapshots of the scenes' weak U-Net: loading, sha256 verification, samples improving with steps."""

import json
import shutil

import pytest
import torch

from tutorial_lib import pretrained as P
from tutorial_lib import scenes
from tutorial_lib.evaluation import pixel_stats
from tutorial_lib.guiders import ClassifierFreeGuidance
from tutorial_lib.sampler import ConditionalDDIMSampler
from tutorial_lib.unet import ConditionalUNet, UNetConfig

pytestmark = pytest.mark.skipif(not (P.SNAPSHOTS_DIR / P.MANIFEST_NAME).is_file(),
                                reason="the training snapshots are not shipped")


@pytest.fixture(scope="module")
def snapshots():
    return P.load_snapshots()  # hash-verified against snapshots/MANIFEST.sha256


def _copy(tmp_path):
    return shutil.copytree(P.SNAPSHOTS_DIR, tmp_path / "snapshots")


def test_snapshots_load_verified_in_eval_mode_with_the_weak_config(snapshots):
    assert list(snapshots) == [100, 300, 1000]
    # the steps are those the shipped weak run was configured to snapshot (training.json)
    info = json.loads((P.SCENES_DIR / "training.json").read_text())
    assert list(snapshots) == info["models"]["weak_unet"]["train_config"]["snapshot_steps"]
    weak = UNetConfig.from_dict(json.loads((P.SCENES_DIR / "weak_unet_config.json").read_text()))
    for model in snapshots.values():
        assert isinstance(model, ConditionalUNet) and not model.training
        assert model.config == weak
        assert all(p.dtype == torch.float32 and p.device.type == "cpu" and not p.requires_grad
                   for p in model.parameters())


def test_tampered_snapshot_fails_naming_it(tmp_path):
    folder = _copy(tmp_path)
    path = folder / "weak_unet_step_0300.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # one byte of tensor data: the header still parses, only the hash disagrees
    path.write_bytes(bytes(data))
    with pytest.raises(P.AssetVerificationError, match=r"weak_unet_step_0300\.safetensors: sha256 mismatch"):
        P.load_snapshots(folder)
    assert list(P.load_snapshots(folder, verify=False)) == [100, 300, 1000]  # unchecked, it still loads


def test_missing_snapshot_or_folder_is_named(tmp_path):
    folder = _copy(tmp_path)
    (folder / "weak_unet_step_1000.safetensors").unlink()  # still listed in the manifest
    with pytest.raises(P.AssetVerificationError, match=r"weak_unet_step_1000\.safetensors: missing"):
        P.load_snapshots(folder)
    with pytest.raises(P.AssetVerificationError, match="does not exist"):
        P.load_snapshots(tmp_path / "nowhere")


def test_later_snapshot_samples_are_closer_to_the_data(snapshots):
    # Four scenes, the same x_T, CFG 3 with 5 DDIM steps. Step 100's samples are saturated noise
    # (pixel std ~12, nine tenths of the pixels outside [-1, 1]); step 1000's are coloured blobs
    # (std ~0.7 against the data's ~0.3, about a tenth out of range). The thresholds sit between.
    models = P.load_pretrained(world="scenes", classifiers=False)  # the text encoder they share
    g = torch.Generator().manual_seed(0)
    real, _, captions = scenes.generate(4, g)
    x_T = torch.randn(real.shape, generator=g)
    cond, uncond = models.encode(captions)
    stats = {}
    for step in (100, 1000):
        sampler = ConditionalDDIMSampler(snapshots[step], models.schedule)
        images = sampler.sample(x_T.shape, cond, uncond, ClassifierFreeGuidance(3.0), 5, latents=x_T, progress=False)
        stats[step] = pixel_stats(images)
    real_std = pixel_stats(real)["pixel_std"]
    assert stats[1000]["pixel_std"] < 5 * real_std < stats[100]["pixel_std"]
    assert stats[1000]["frac_out_of_range"] < 0.5 < stats[100]["frac_out_of_range"]
