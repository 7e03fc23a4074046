"""`fdin` is an installed command. The project is installed editable (as `make venv`
does) into a throwaway virtual environment that sees the test interpreter's packages, and the `fdin`
console script runs from a temporary folder outside the checkout, with no PYTHONPATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.app_support import group_photo

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fdin_command(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # the throwaway venv sees the test interpreter's dependencies (never a copy of them, never the network)
    Path(purelib, "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "-e", str(REPO)], check=True)
    command = venv / "bin" / "fdin"
    assert command.is_file(), "pyproject's [project.scripts] installs the fdin command"
    return command


def _run(command: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(command), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_fdin_runs_outside_the_checkout(fdin_command, tmp_path) -> None:
    assert not tmp_path.resolve().is_relative_to(REPO)
    help_ = _run(fdin_command, "--help", cwd=tmp_path)
    assert help_.returncode == 0 and all(c in help_.stdout for c in ("faces", "analyze", "relate"))
    photo = tmp_path / "group.jpg"
    photo.write_bytes(group_photo().read_bytes())
    out = _run(fdin_command, "faces", "group.jpg", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["faces"]) >= 5  # insightface's t1.jpg: six people


def test_user_error_is_one_line_from_the_command(fdin_command, tmp_path) -> None:
    (tmp_path / "notes.jpg").write_text("not a photo")
    out = _run(fdin_command, "faces", "notes.jpg", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.strip()
