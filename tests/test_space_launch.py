"""``app.py`` launched exactly as a Hugging Face Space launches it: ``python app.py`` with
``SPACE_ID``, ``GRADIO_SERVER_NAME=0.0.0.0`` and ``GRADIO_SERVER_PORT``. The server must listen on all
interfaces. Only loopback connections are made; the listening address is read from /proc/net/tcp."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.app_support import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 300.0  # a hang guard only: the first start may also generate the example clip


def _listening(port: int) -> set[str]:
    """Local addresses (IPv4 dotted, or "::" forms) with a socket in LISTEN state on ``port``."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(FileNotFoundError), open(table) as handle:
            for line in list(handle)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port_hex = local.split(":")
                if state == "0A" and int(port_hex, 16) == port:  # 0A = TCP_LISTEN
                    found.add("0.0.0.0" if address == "0" * width else
                              ".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)) if width == 8
                              else address)
    return found


def test_app_py_serves_on_all_interfaces_like_a_space(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "SPACE_ID": "fdin-tests/fdin", "GRADIO_SERVER_NAME": "0.0.0.0",
           "GRADIO_SERVER_PORT": str(port), "PYTHONPATH": str(ROOT)}
    log = tmp_path / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline, status = time.monotonic() + START_TIMEOUT_S, None
        while time.monotonic() < deadline and proc.poll() is None and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    status = response.status
            except OSError:
                time.sleep(0.5)
        assert status == 200, f"app.py did not answer on loopback:\n{log.read_text()[-3000:]}"
        listening = _listening(port)
        assert "0.0.0.0" in listening or "0" * 32 in listening, f"listens only on {listening}"
        assert "127.0.0.1" not in listening
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_flags_override_the_environment() -> None:
    """The launcher's own parsing: ``--host/--port`` win over ``GRADIO_SERVER_*`` (no server started)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fdin_app_launcher", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.parse_args(["--host", "127.0.0.1", "--port", "8123"])
    from fdin.app import server_address

    env = {"SPACE_ID": "x/y", "GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861"}
    assert server_address(args.host, args.port, env=env) == ("127.0.0.1", 8123)
    defaults = module.parse_args([])
    assert server_address(defaults.host, defaults.port, env=env) == ("0.0.0.0", 7861)
    assert server_address(defaults.host, defaults.port, env={}) == ("127.0.0.1", 7860)
