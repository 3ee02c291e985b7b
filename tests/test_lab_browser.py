"""scripts/check_lab.py, the real-JupyterLab check of the course (``make test-lab``).

The check itself (notebooks run through JupyterLab's UI in headless Chromium, widgets used
and timed) takes minutes and is run by ``make test-lab`` and CI, not here. These tests cover
its pure parts (arguments, the token and port the server prints, the settings it writes, the
report), that it starts and stops JupyterLab as ``make lab`` does (no browser needed), and
that the notebooks still have the controls it uses.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from _scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


check_lab = load_script("check_lab")


def test_arguments_default_to_06_and_08_and_accept_numbers():
    args = check_lab.parse_args([])
    assert args.notebooks == ["06_classifier_free_guidance.ipynb", "08_full_sampler.ipynb"]
    assert args.out == ROOT / "build" / "lab" and not args.install
    args = check_lab.parse_args(["--install", "08", "notebooks/06_classifier_free_guidance.ipynb", "--timeout", "5"])
    assert args.notebooks == ["08_full_sampler.ipynb", "06_classifier_free_guidance.ipynb"]
    assert args.install and args.timeout == 5.0
    with pytest.raises(SystemExit):
        check_lab.parse_args(["99"])
    with pytest.raises(SystemExit):
        check_lab.parse_args(["no_such_notebook"])


def test_token_and_port_are_read_from_the_server_output():
    line = "[I 2026-12-01 23:14:14.959 ServerApp] http://127.0.0.1:43791/lab?token=0a1b2c3d4e5f\n"
    assert check_lab.parse_server_url(line) == (43791, "0a1b2c3d4e5f")
    assert check_lab.parse_server_url("[I ServerApp] http://localhost:8888/lab?token=abc") is None
    assert check_lab.parse_server_url("[I ServerApp] Serving notebooks from local directory") is None
    assert check_lab.redact(line, "0a1b2c3d4e5f").endswith("token=<token>\n")
    assert check_lab.redact("no token yet", None) == "no token yet"


def test_server_command_is_make_labs():
    port = check_lab.free_port()
    assert 0 < port < 65536
    cmd = check_lab.server_command(Path("/tmp/x/notebooks"), port)
    assert cmd[0] == str(Path(sys.executable).with_name("jupyter")) and cmd[1] == "lab"
    assert "--notebook-dir=/tmp/x/notebooks" in cmd and "--ServerApp.ip=127.0.0.1" in cmd
    assert f"--ServerApp.port={port}" in cmd and "--no-browser" in cmd
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
    assert not any("token" in part.lower() or "disable_check_xsrf" in part for part in cmd)
    lab = (ROOT / "Makefile").read_text().split("\nlab:")[1].split("\n\n")[0]
    for flag in ("--notebook-dir=notebooks", "--ServerApp.ip=127.0.0.1", "JUPYTER_PREFER_ENV_PATH=1"):
        assert flag in lab


def test_lab_settings_save_widget_state_and_make_lab_writes_them(tmp_path):
    path = check_lab.write_lab_settings(tmp_path)
    assert path == tmp_path / "share/jupyter/lab/settings/overrides.d" / check_lab.OVERRIDES_NAME
    assert json.loads(path.read_text()) == {"@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": True}}
    assert check_lab.write_lab_settings(tmp_path) == path  # idempotent
    makefile = (ROOT / "Makefile").read_text()
    assert "scripts/check_lab.py --write-settings" in makefile.split("\nlab:")[1].split("\n\n")[0]
    assert "scripts/check_lab.py --install" in makefile.split("\ntest-lab:")[1].split("\n\n")[0]
    assert "make test-lab" in (ROOT / ".ci" / "run").read_text()


def test_report_table_and_latencies():
    good, bad = check_lab.Result("06_x.ipynb"), check_lab.Result("08_y.ipynb")
    good.add("Run All Cells", True, "10.0 s")
    bad.add("Run All Cells", True, "12.0 s")
    bad.add("Generate changes the figure (first use)", False, "TimeoutError")
    assert good.ok and not bad.ok
    table = check_lab.format_table([good, bad]).splitlines()
    assert table[0].split()[:3] == ["notebook", "check", "result"]
    assert any("08_y.ipynb" in row and "FAIL" in row and "TimeoutError" in row for row in table)
    assert table[-1] == "2/3 checks pass; 1 FAILED"
    text = check_lab.format_latencies({"06_x.ipynb": [1.234, 0.5], "08_y.ipynb": [2.0]})
    assert "1.23 s" in text and "0.50 s" in text and text.splitlines()[-1].rstrip().endswith("-")
    timing = {"seconds": 1.5, "busy": 0.1, "idle": 1.4, "status": "done in 1.3 s"}
    assert check_lab.describe_timing(timing) == "1.50 s to the new image (kernel busy 0.1-1.4 s); status: done in 1.3 s"


def test_the_notebooks_have_the_controls_the_check_uses():
    for prefix, spec in check_lab.INTERACTIONS.items():
        path = next((ROOT / "notebooks").glob(f"{prefix}_*.ipynb"))
        source = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        for label in filter(None, (spec.label, spec.seed_label)):
            assert f'"{label}"' in source or f"'{label}'" in source, f"{path.name} has no control labelled {label!r}"


@pytest.mark.timeout(120)
def test_server_starts_with_token_auth_on_a_copy_and_stops(tmp_path):
    notebooks = check_lab.copy_notebooks(tmp_path)
    assert sorted(p.name for p in notebooks.glob("*.ipynb")) == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    server = check_lab.LabServer(notebooks, tmp_path, tmp_path / "server.log")
    try:
        server.wait(90)
        assert server.token and len(server.token) >= 16
        assert "started" in server.api("api/status")
        assert check_lab.widget_save_state(server) is not None
        result = check_lab.check_server(server, tmp_path)
        assert result.checks[0][:2] == ("token authentication on", True), result.checks
        assert result.checks[1][0] == "widget saveState on"  # on only where the settings were written
        assert server.token not in (tmp_path / "server.log").read_text()
    finally:
        server.stop()
    assert server.proc.poll() is not None
