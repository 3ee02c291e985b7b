"""`make lab` serves JupyterLab on localhost with token authentication on.

This starts the same server command the Makefile uses (on a free port, with a
known token), asks /api/status with and without the token, and stops it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_makefile_lab_keeps_the_token_and_localhost():
    text = (ROOT / "Makefile").read_text()
    lab = text.split("\nlab:")[1].split("\n\n")[0]
    assert "127.0.0.1" in lab
    assert "token=''" not in lab and 'token=""' not in lab and "disable_check_xsrf" not in lab


@pytest.mark.timeout(120)
def test_jupyterlab_answers_with_token(tmp_path):
    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists():
        jupyter = shutil.which("jupyter")
    assert jupyter, "jupyter is not installed in this environment"
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_TOKEN": token}
    proc = subprocess.Popen(
        [str(jupyter), "lab", "--no-browser", f"--notebook-dir={ROOT / 'notebooks'}",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/status"
        deadline = time.time() + 90
        status = None
        while time.time() < deadline:
            try:
                status, body = _get(url, token)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        assert status == 200, f"JupyterLab did not answer on {url}"
        assert "started" in json.loads(body)
        assert _get(url, None)[0] == 403, "the server answered without a token"
        assert _get(url, "wrong-token")[0] == 403
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
