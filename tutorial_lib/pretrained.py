"""The course's shipped, trained models: loading, hash verification, export.

Introduced in notebook 00 (assets verified by hash) and used by notebooks 03-08.

The weights live in ``tutorial_lib/assets/models/`` as safetensors (never
pickles), each with a JSON config beside it, and a ``MANIFEST.sha256`` in the
format of ``sha256sum`` (so ``cd tutorial_lib/assets/models && sha256sum -c
MANIFEST.sha256`` also checks them):

==============================  =============================================
file                            what
==============================  =============================================
``unet.safetensors``            the text-conditioned U-Net (EMA weights)
``text_encoder.safetensors``    the small CLIP text encoder trained with it
``judge.safetensors``           clean-image attribute classifier (scoring only)
``noisy_classifier.safetensors``  noise-robust classifier ``(x_t, t)`` (guidance)
``*_config.json``               the configs; ``schedule.json`` the noise schedule
``training.json``               how they were trained (commands, times, metrics)
``scenes/snapshots/``           the scenes' weak U-Net at steps 100, 300, 1000 of its
                                run (:func:`load_snapshots`, notebook 11), own manifest
==============================  =============================================

Usage::

    from tutorial_lib.pretrained import load_pretrained
    m = load_pretrained()              # verifies hashes, eval mode, CPU
    images = m.generate(["a large red circle in the top left"], guider=ClassifierFreeGuidance(3.0))

They were produced by ``python -m tutorial_lib.train ... --config full`` and
copied here with ``python -m tutorial_lib.pretrained export``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import re
import shutil
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors

from . import _checks

__all__ = [
    "MODELS_DIR",
    "SCENES_DIR",
    "SNAPSHOTS_DIR",
    "MANIFEST_NAME",
    "WEIGHT_FILES",
    "AssetVerificationError",
    "PretrainedModels",
    "load_pretrained",
    "load_snapshots",
    "verify_assets",
    "write_manifest",
    "export_assets",
    "sha256_file",
]

MODELS_DIR = Path(__file__).resolve().parent / "assets" / "models"
#: The scenes models (one to three objects; binding, relation and count captions).
SCENES_DIR = MODELS_DIR / "scenes"
#: Training snapshots of the scenes' weak U-Net (``weak_unet_step_<NNNN>.safetensors``, one config).
SNAPSHOTS_DIR = SCENES_DIR / "snapshots"
_SNAPSHOT_FILE = re.compile(r"weak_unet_step_(\d+)\.safetensors")
MANIFEST_NAME = "MANIFEST.sha256"

#: Every file the manifest covers, per component (weights first).
COMPONENT_FILES: dict[str, tuple[str, ...]] = {
    "unet": ("unet.safetensors", "unet_config.json"),
    "text_encoder": ("text_encoder.safetensors", "text_encoder_config.json"),
    "schedule": ("schedule.json",),
    "judge": ("judge.safetensors", "judge_config.json"),
    "noisy_classifier": ("noisy_classifier.safetensors", "noisy_classifier_config.json"),
    # scenes only: the deliberately weaker U-Net (autoguidance), sharing the text encoder
    "weak_unet": ("weak_unet.safetensors", "weak_unet_config.json"),
}
#: Components a model folder may lack (only the scenes folder has a weak U-Net).
OPTIONAL_COMPONENTS = ("weak_unet",)
#: The weight files every model folder has (the optional components' are not listed).
WEIGHT_FILES = tuple(f for c, files in COMPONENT_FILES.items() if c not in OPTIONAL_COMPONENTS
                     for f in files if f.endswith(".safetensors"))


#: The default model folder of each world.
WORLD_DIRS: dict[str, Path] = {"shapes": MODELS_DIR, "scenes": SCENES_DIR}


class AssetVerificationError(RuntimeError):
    """A shipped model file is missing, truncated or does not match its sha256."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _read_manifest(directory: Path) -> dict[str, str]:
    path = directory / MANIFEST_NAME
    _checks.that(path.is_file(), f"{path} is missing: the model folder has no manifest. Reinstall the package or re-export the models with `python -m tutorial_lib.pretrained export`.", AssetVerificationError)
    entries = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        _checks.that(len(parts) == 2 and len(parts[0]) == 64, f"{path}: line {n} is not '<sha256>  <file>': {line!r}", AssetVerificationError)
        entries[parts[1].lstrip("*").strip()] = parts[0].lower()
    return entries


def _safetensors_problem(data: bytes) -> str | None:
    """Why the bytes of a safetensors file are structurally broken (truncated, bad header), or None."""
    size = len(data)
    if size < 8:
        return f"truncated: {size} bytes, not even a safetensors header"
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > size:
        return f"truncated: {size} bytes but the header alone needs {8 + header_len}"
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "corrupt: the safetensors header is not valid JSON"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    expected = 8 + header_len + (max(ends) if ends else 0)
    if size < expected:
        return f"truncated: {size} bytes, the header describes {expected}"
    if size > expected:
        return f"corrupt: {size} bytes, the header describes {expected}"
    return None


def _file_status(name: str, data: bytes, expected: str) -> str:
    """``"ok"`` or what is wrong with the bytes ``data`` of the manifest entry ``name``."""
    if name.endswith(".safetensors"):
        problem = _safetensors_problem(data)
        if problem:
            return problem
    got = hashlib.sha256(data).hexdigest()
    return "ok" if got == expected else f"sha256 mismatch (expected {expected[:12]}..., got {got[:12]}...)"


def verify_assets(directory: str | Path | None = None, required: bool = True) -> dict[str, str]:
    """Check every file of the manifest; returns ``{file: status}``.

    Status is ``"ok"``, ``"missing"``, ``"truncated: ..."`` / ``"corrupt: ..."``
    (safetensors whose size disagrees with their header) or ``"sha256 mismatch
    (expected ..., got ...)"``. Files the loader needs but the manifest does not
    list are reported as ``"not in manifest"`` (``required=False``: only the manifest's own files,
    for folders that are not a full model set). Never raises for a bad file
    (only for a missing or malformed manifest); :func:`load_pretrained` turns a
    bad status into an :class:`AssetVerificationError` naming the file.
    """
    directory = Path(directory) if directory is not None else MODELS_DIR
    manifest = _read_manifest(directory)
    status: dict[str, str] = {}
    for name, expected in manifest.items():
        path = directory / name
        status[name] = _file_status(name, path.read_bytes(), expected) if path.is_file() else "missing"
    for component, files in (COMPONENT_FILES.items() if required else ()):
        for name in files:
            if name not in status and component not in OPTIONAL_COMPONENTS:
                status[name] = "not in manifest" if (directory / name).is_file() else "missing"
    return status


def write_manifest(directory: str | Path | None = None) -> Path:
    """(Re)write ``MANIFEST.sha256`` for every file of the folder except the manifest itself."""
    directory = Path(directory) if directory is not None else MODELS_DIR
    lines = [
        f"{sha256_file(p)}  {p.name}"
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST_NAME and not p.name.startswith(".")
    ]
    path = directory / MANIFEST_NAME
    path.write_text("\n".join(lines) + "\n")
    return path


def _read_files(directory: Path, names, verify: bool) -> dict[str, bytes]:
    """Read each file of ``names`` once; with ``verify``, check exactly those bytes against the manifest.

    Returns ``{name: bytes}`` (a missing file is left out when ``verify`` is off; its loader
    names it). With ``verify``, every bad file (missing, not in the manifest, truncated,
    modified) is listed in one :class:`AssetVerificationError`.
    """
    manifest = _read_manifest(directory) if verify else {}
    data: dict[str, bytes] = {}
    bad: dict[str, str] = {}
    for name in sorted(names):
        path = directory / name
        if not path.is_file():
            bad[name] = "missing"
            continue
        data[name] = path.read_bytes()
        if verify:
            status = _file_status(name, data[name], manifest[name]) if name in manifest else "not in manifest"
            if status != "ok":
                bad[name] = status
    lines = "\n".join(f"  {directory / k}: {v}" for k, v in sorted(bad.items()))
    _checks.that(not (verify and bad), f"shipped model files failed verification:\n{lines}\nReinstall the package (or restore the files from git) and try again.", AssetVerificationError)
    return data


def _bytes_of(directory: Path, files: dict[str, bytes], name: str) -> bytes:
    """The bytes ``_read_files`` read for ``name``; a missing file (left out when not verifying) is named."""
    _checks.that(name in files, f"{directory / name} is missing", AssetVerificationError)
    return files[name]


def _json_of(directory: Path, files: dict[str, bytes], name: str) -> dict:
    data = _bytes_of(directory, files, name)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AssetVerificationError(f"{directory / name} is not valid JSON: {e}") from None


def _weights_of(directory: Path, files: dict[str, bytes], name: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file's bytes (each owns its memory: nothing maps the file)."""
    data = _bytes_of(directory, files, name)
    try:
        return load_safetensors(data)
    except Exception as e:  # safetensors raises its own error types
        raise AssetVerificationError(f"{directory / name} could not be read as safetensors: {e}") from None


def _unet_of(directory: Path, files: dict[str, bytes], weights: str, config: str, device) -> torch.nn.Module:
    """The :class:`~tutorial_lib.unet.ConditionalUNet` of the bytes of ``weights`` and its JSON ``config``."""
    from .unet import ConditionalUNet, UNetConfig

    cfg = UNetConfig.from_dict(_json_of(directory, files, config))
    return _build(lambda: ConditionalUNet(cfg), _weights_of(directory, files, weights), directory / weights, device)


def _build(module_fn, state: dict[str, torch.Tensor], source: Path, device) -> torch.nn.Module:
    """Construct on the meta device, then take the loaded tensors as the parameters.

    No random initialisation is run (the weights would overwrite it, and it would move the
    global RNG); ``strict`` loading still rejects a missing, unexpected or mis-shaped tensor.
    """
    with torch.device("meta"):
        module = module_fn()
    expected = module.state_dict()
    state = {k: v.to(expected[k].dtype) if k in expected and v.dtype != expected[k].dtype else v
             for k, v in state.items()}
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise AssetVerificationError(f"{source} does not match its config: {e}") from None
    return module.to(device).eval().requires_grad_(False)


@dataclass
class PretrainedModels:
    """The shipped models, in eval mode. Introduced in notebook 00.

    Attributes:
        tokenizer: the real CLIP BPE tokenizer (77 tokens) as
            :class:`~tutorial_lib.clip_tokenizer.CLIPBPETokenizer`: ``transformers.CLIPTokenizer``'s
            own ``tokenizers`` backend, without the ~1.2 s ``transformers`` import (same ids,
            tested); loaded on first access. Assign ``models.tokenizer = ...`` to use another one.
        text_encoder: the small CLIP text encoder trained jointly with the U-Net, a
            :class:`~tutorial_lib.clip_text.CLIPTextEncoder` (the course's own implementation,
            tested equal to ``transformers.CLIPTextModel``, same parameter names).
        unet: the :class:`~tutorial_lib.unet.ConditionalUNet` (ε-prediction).
        schedule: the :class:`~tutorial_lib.schedule.NoiseSchedule` it was trained with.
        noisy_classifier: :class:`~tutorial_lib.classifiers.AttributeClassifier` on ``(x_t, t)``.
        judge: :class:`~tutorial_lib.classifiers.AttributeClassifier` on clean images (scoring only).
        directory: where the files were read from.
        info: ``training.json`` (commands, training times, metrics) if present.
        weak_unet: scenes only: the deliberately weaker U-Net of the same task (smaller,
            trained a quarter as long, on the same frozen text encoder) that autoguidance
            uses in place of the unconditional branch; None elsewhere.
    """

    text_encoder: torch.nn.Module
    unet: torch.nn.Module
    schedule: object
    noisy_classifier: torch.nn.Module | None
    judge: torch.nn.Module | None
    directory: Path
    info: dict = field(default_factory=dict)
    weak_unet: torch.nn.Module | None = None

    @functools.cached_property
    def tokenizer(self):
        """The CLIP tokenizer, loaded once, on first access: :class:`~tutorial_lib.clip_tokenizer.CLIPBPETokenizer`,
        ``transformers.CLIPTokenizer``'s own backend without importing ``transformers`` (same ids, tested)."""
        from .clip_tokenizer import CLIPBPETokenizer

        return CLIPBPETokenizer()

    @torch.no_grad()
    def encode(self, prompts, negative_prompts=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prompt_embeds, negative_embeds)``, each ``(B, 77, D)``; the default negative is ``""``."""
        from .text import encode_prompt

        return encode_prompt(self.tokenizer, self.text_encoder, prompts, negative_prompts)

    def sampler(self, config=None, cfg_mode: str = "auto"):
        """A :class:`~tutorial_lib.sampler.ConditionalDDIMSampler` over this U-Net and schedule
        (``config``: a :class:`~tutorial_lib.sampler.SamplerConfig`)."""
        from .sampler import ConditionalDDIMSampler

        return ConditionalDDIMSampler(self.unet, self.schedule, config, cfg_mode=cfg_mode)

    @torch.no_grad()
    def generate(self, prompts, negative_prompts=None, guider=None, num_inference_steps: int = 25,
                 generator: torch.Generator | None = None, callback=None, cfg_mode: str = "auto",
                 progress: bool = False, latents: torch.Tensor | None = None) -> torch.Tensor:
        """Text to images ``(B, 3, H, W)`` with the course's DDIM sampler.

        ``guider`` defaults to ``ClassifierFreeGuidance(3.0)``; ``callback``, ``cfg_mode`` and
        ``latents`` (x_T, else drawn with ``generator``) are the sampler's. Images are unclamped
        (values a little outside [−1, 1] are possible)."""
        from .guiders import ClassifierFreeGuidance

        if isinstance(prompts, str):
            prompts = [prompts]
        cond, uncond = self.encode(prompts, negative_prompts)
        size = self.unet.config.sample_size
        return self.sampler(cfg_mode=cfg_mode).sample(
            (len(prompts), self.unet.config.in_channels, size, size), cond, uncond,
            guider if guider is not None else ClassifierFreeGuidance(3.0),
            num_inference_steps, generator=generator, latents=latents, callback=callback, progress=progress,
        )


def load_pretrained(
    directory: str | Path | None = None,
    verify: bool = True,
    classifiers: bool = True,
    device: str | torch.device = "cpu",
    world: str = "shapes",
) -> PretrainedModels:
    """Load the shipped text encoder, U-Net, schedule and classifiers (and, lazily, the tokenizer).

    Args:
        directory: the model folder (default: the package's folder of ``world``).
        world: ``"shapes"`` (one object per image; ``assets/models``) or ``"scenes"`` (one to
            three objects, with the weak U-Net for autoguidance; ``assets/models/scenes``).
        verify: check every file it uses against ``MANIFEST.sha256`` first; a
            missing, truncated or modified file raises :class:`AssetVerificationError`
            naming it.
        classifiers: also load the judge and the noise-robust classifier.
        device: where to put the models.

    Returns:
        :class:`PretrainedModels`, every module in eval mode with
        ``requires_grad=False``.

    Integrity and speed: each file is read once, its sha256 is computed over
    exactly those bytes, and the weights and configs are parsed from the same
    bytes, so what is used is what was verified (no second read, no memory map
    of a file that could change later). There is **no hash cache**: every call
    hashes every file it uses again (about 20 MiB, ~20 ms on the course's 2-core
    CPU), so a file changed after an earlier load in the same process still fails.
    The modules are constructed on the meta device and take the loaded tensors as
    their parameters (no random initialisation that the weights would overwrite;
    the global RNG is not moved).

    No ``transformers`` import: the text encoder is built as the course's
    :class:`~tutorial_lib.clip_text.CLIPTextEncoder` (same parameter names as
    ``transformers.CLIPTextModel``, tested equal to it), and the tokenizer (``CLIPTokenizer``'s
    ``tokenizers`` backend, :class:`~tutorial_lib.clip_tokenizer.CLIPBPETokenizer`) is built on
    the first access to ``models.tokenizer`` (``encode``/``generate`` do that). Measured on the
    course's 2-core CPU: in a fresh process with ``torch`` already imported (every notebook has),
    a call takes ~0.4 s, plus ~0.2 s at the first tokenizer access; a second call in the same
    process ~0.08 s (``make bench`` reports all three).
    """
    from .clip_text import CLIPTextEncoder, CLIPTextModelConfig
    from .schedule import NoiseSchedule

    _checks.that(world in WORLD_DIRS, f"world must be one of {sorted(WORLD_DIRS)}, got {world!r}")
    directory = Path(directory) if directory is not None else WORLD_DIRS[world]
    _checks.that(directory.is_dir(), f"model folder {directory} does not exist", AssetVerificationError)
    components = ["unet", "text_encoder", "schedule"] + (["judge", "noisy_classifier"] if classifiers else [])
    if (directory / COMPONENT_FILES["weak_unet"][0]).is_file():
        components.append("weak_unet")
    files = _read_files(directory, {f for c in components for f in COMPONENT_FILES[c]}, verify)

    def build(module_fn, component: str) -> torch.nn.Module:
        name = f"{component}.safetensors"
        return _build(module_fn, _weights_of(directory, files, name), directory / name, device)

    def unet(component: str) -> torch.nn.Module:
        return _unet_of(directory, files, f"{component}.safetensors", f"{component}_config.json", device)

    te_cfg = CLIPTextModelConfig.from_dict(_json_of(directory, files, "text_encoder_config.json"))
    models = {"text_encoder": build(lambda: CLIPTextEncoder(te_cfg), "text_encoder"), "unet": unet("unet"),
              "schedule": NoiseSchedule.from_config(_json_of(directory, files, "schedule.json")),
              "weak_unet": unet("weak_unet") if "weak_unet" in components else None,
              "judge": None, "noisy_classifier": None}
    if classifiers:
        for name in ("judge", "noisy_classifier"):
            cls, config = _classifier_classes(_json_of(directory, files, f"{name}_config.json"))
            models[name] = build(lambda cls=cls, config=config: cls(config), name)
    info_path = directory / "training.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return PretrainedModels(directory=directory, info=info, **models)


def load_snapshots(directory: str | Path | None = None, verify: bool = True,
                   device: str | torch.device = "cpu") -> dict[int, torch.nn.Module]:
    """The scenes' weak U-Net as it was at several steps of its training run. Notebook 11.

    ``{step: ConditionalUNet}`` in increasing step order, each in eval mode with
    ``requires_grad=False`` and float32 weights, built from the folder's one
    ``weak_unet_config.json`` (the training config's ``snapshot_steps`` wrote them; the
    final model of the same run is ``load_pretrained(world="scenes").weak_unet``). They
    read the scenes text encoder's context ``(B, 77, 64)``, like the weak U-Net.

    Args:
        directory: the snapshot folder (default :data:`SNAPSHOTS_DIR`).
        verify: check every file against the folder's own ``MANIFEST.sha256`` first (the
            snapshots listed there and those on disk); a missing, truncated or modified
            file raises :class:`AssetVerificationError` naming it, as in :func:`load_pretrained`.
        device: where to put the models.
    """
    directory = Path(directory) if directory is not None else SNAPSHOTS_DIR
    _checks.that(directory.is_dir(), f"snapshot folder {directory} does not exist", AssetVerificationError)
    # the manifest's list too, so that a deleted snapshot is reported rather than silently skipped
    names = {p.name for p in directory.iterdir()} | (set(_read_manifest(directory)) if verify else set())
    weights = sorted((int(m.group(1)), n) for n in names if (m := _SNAPSHOT_FILE.fullmatch(n)))
    _checks.that(weights, f"snapshot folder {directory} has no weak_unet_step_<N>.safetensors", AssetVerificationError)
    config = COMPONENT_FILES["weak_unet"][1]
    files = _read_files(directory, {config} | {n for _, n in weights}, verify)
    return {step: _unet_of(directory, files, name, config, device) for step, name in weights}


def _classifier_classes(config: dict):
    """``(module class, config)`` of a classifier's JSON config: the scenes' cell reader or the attribute one."""
    from .classifiers import (
        AttributeClassifier,
        ClassifierConfig,
        SceneClassifier,
        SceneClassifierConfig,
    )

    if "feature_dim" in config:
        return SceneClassifier, SceneClassifierConfig.from_dict(config)
    return AttributeClassifier, ClassifierConfig.from_dict(config)


def export_assets(
    denoiser_dir: str | Path | None = None,
    judge_dir: str | Path | None = None,
    noisy_classifier_dir: str | Path | None = None,
    directory: str | Path | None = None,
    info: dict | None = None,
    weak_denoiser_dir: str | Path | None = None,
    half: bool = False,
) -> Path:
    """Copy trained weights (``runs/<model>/final``) into a model folder and rewrite its manifest.

    ``weak_denoiser_dir``: a run whose U-Net becomes ``weak_unet`` (scenes). ``half``: store
    the float32 tensors as float16 (half the bytes; :func:`load_pretrained` restores float32).
    """
    from safetensors.torch import load_file, save_file

    directory = Path(directory) if directory is not None else MODELS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    sources = []  # (source file, name in the model folder)
    if denoiser_dir is not None:
        sources += [(Path(denoiser_dir) / f, f) for f in
                    COMPONENT_FILES["unet"] + COMPONENT_FILES["text_encoder"] + COMPONENT_FILES["schedule"]]
    if weak_denoiser_dir is not None:
        sources += [(Path(weak_denoiser_dir) / f, f"weak_{f}") for f in COMPONENT_FILES["unet"]]
    for name, run in (("judge", judge_dir), ("noisy_classifier", noisy_classifier_dir)):
        if run is not None:
            sources += [(Path(run) / f, f) for f in COMPONENT_FILES[name]]
    for src, name in sources:
        _checks.that(src.is_file(), f"{src} is missing; train the model first", FileNotFoundError)
        if half and name.endswith(".safetensors"):
            state = load_file(str(src))
            save_file({k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()},
                      str(directory / name))
        else:
            shutil.copyfile(src, directory / name)
    if info is not None:
        (directory / "training.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return write_manifest(directory)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tutorial_lib.pretrained")
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="check the shipped files against MANIFEST.sha256")
    v.add_argument("--dir", default=None)
    e = sub.add_parser("export", help="copy trained weights into the package and rewrite the manifest")
    e.add_argument("--denoiser", default=None, help="e.g. runs/denoiser-full/final")
    e.add_argument("--judge", default=None, help="e.g. runs/judge-full/final")
    e.add_argument("--noisy-classifier", default=None, help="e.g. runs/noisy_classifier-full/final")
    e.add_argument("--weak-denoiser", default=None, help="scenes: e.g. runs/denoiser-scenes-weak/final")
    e.add_argument("--half", action="store_true", help="store float32 tensors as float16")
    e.add_argument("--info", default=None, help="a JSON file copied to training.json")
    e.add_argument("--dir", default=None)
    t = sub.add_parser("time", help="time load_pretrained()")
    t.add_argument("--dir", default=None)
    args = p.parse_args(argv)
    if args.cmd == "verify":
        status = verify_assets(args.dir)
        for k, s in sorted(status.items()):
            print(f"{s:>10}  {k}" if s == "ok" else f"FAILED  {k}: {s}")
        return 0 if all(s == "ok" for s in status.values()) else 1
    if args.cmd == "export":
        info = json.loads(Path(args.info).read_text()) if args.info else None
        path = export_assets(args.denoiser, args.judge, args.noisy_classifier, args.dir, info,
                             weak_denoiser_dir=args.weak_denoiser, half=args.half)
        print(path.read_text())
        return 0
    t0 = time.perf_counter()
    load_pretrained(args.dir)
    print(f"load_pretrained: {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
