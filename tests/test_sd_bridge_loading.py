"""The real-weights path of the SD bridge fails fast offline, names the tiny fallback, and loads a
local diffusers-format folder (written here from the tiny components) without a network."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tutorial_lib import sd_bridge

diffusers = pytest.importorskip("diffusers")

_PROBE = """
import json, time
from tutorial_lib.sd_bridge import load_sd_components
start = time.perf_counter()
try:
    load_sd_components()
    out = {"raised": None}
except Exception as err:
    out = {"raised": type(err).__name__, "os_error": isinstance(err, OSError), "message": str(err)}
out["seconds"] = time.perf_counter() - start
print(json.dumps(out))
"""


def test_load_sd_components_fails_fast_offline_in_an_empty_cache(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_SD_MODEL", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["raised"] == "SDWeightsNotAvailableError" and out["os_error"]
    assert out["seconds"] < 5.0, out
    assert "tiny_sd_components" in out["message"] and "COURSE_SD_MODEL" in out["message"]


def test_a_local_folder_loads_and_a_missing_one_falls_back(tmp_path, monkeypatch):
    parts = sd_bridge.tiny_sd_components(seed=0)
    diffusers.StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                      requires_safety_checker=False).save_pretrained(tmp_path / "sd")
    assert json.loads((tmp_path / "sd" / "model_index.json").read_text())["unet"]
    loaded = sd_bridge.load_sd_components(tmp_path / "sd")
    assert set(loaded) == set(parts)
    for name in ("unet", "vae", "text_encoder"):
        ours, theirs = loaded[name].state_dict(), parts[name].state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name
    assert loaded["text_encoder"].is_pretrained and loaded["scheduler"].config.steps_offset == 1

    monkeypatch.setenv(sd_bridge.SD_MODEL_ENV, str(tmp_path / "sd"))
    _, is_real = sd_bridge.sd_components()
    assert is_real
    monkeypatch.setenv(sd_bridge.SD_MODEL_ENV, str(tmp_path / "missing"))
    with pytest.raises(sd_bridge.SDWeightsNotAvailableError, match="tiny_sd_components"):
        sd_bridge.load_sd_components()
    components, is_real = sd_bridge.sd_components()
    assert not is_real and components["text_encoder"].is_pretrained is False
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="could not load"):
        sd_bridge.load_sd_components(tmp_path / "broken")
    with pytest.raises(TypeError, match="pretrained_model_name_or_path"):
        sd_bridge.load_sd_components(3)
