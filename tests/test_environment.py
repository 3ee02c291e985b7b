"""pyproject.toml and environment.yml must describe the same environment."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    parsed = [Requirement(r) for r in reqs]
    # Markers limited to other Python versions (e.g. tomli on 3.10) are not in the conda env (3.11).
    return {
        _canonical(r.name): r
        for r in parsed
        if r.marker is None or r.marker.evaluate({"python_version": "3.11"})
    }


def _environment_requirements() -> tuple[dict[str, Requirement], dict]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    reqs = [Requirement(r) for r in pip_section if not r.startswith("-e")]
    return {_canonical(r.name): r for r in reqs}, env


def test_same_packages():
    py, (env, _) = _pyproject_requirements(), _environment_requirements()
    assert sorted(py) == sorted(env), (
        f"only in pyproject: {sorted(set(py) - set(env))}; only in environment.yml: {sorted(set(env) - set(py))}"
    )


def test_same_version_ranges():
    py, (env, _) = _pyproject_requirements(), _environment_requirements()
    for name, req in py.items():
        assert req.specifier == env[name].specifier, (
            f"{name}: pyproject says {req.specifier}, environment.yml says {env[name].specifier}"
        )


def test_torch_is_pinned_and_python_in_range():
    py, (_, env) = _pyproject_requirements(), _environment_requirements()
    assert str(py["torch"].specifier) == "==2.13.0"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    version = tuple(int(x) for x in python.split("=")[1].split("."))
    assert (3, 10) <= version <= (3, 12)


def test_installs_the_package_itself():
    _, env = _environment_requirements()
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e ." in pip_section


def test_no_torchvision_or_open_clip():
    """torchvision breaks beside the CPU torch here (and with it transformers' CLIP import)."""
    py, (env, _) = _pyproject_requirements(), _environment_requirements()
    for banned in ("torchvision", "open-clip-torch"):
        assert banned not in py and banned not in env


def test_torchvision_not_installed():
    """The installed environment must not contain torchvision (see the README's troubleshooting)."""
    import importlib.util

    assert importlib.util.find_spec("torchvision") is None, "torchvision is installed: uninstall it"
    assert importlib.util.find_spec("open_clip") is None, "open_clip is installed: uninstall it"
