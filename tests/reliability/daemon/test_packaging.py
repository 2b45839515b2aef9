"""The container image, without a Docker engine: the Dockerfile's shape, and its install
script run for real into a fresh virtualenv."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def one(keyword: str) -> str:
    found = [args for kw, args in instructions() if kw == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def test_dockerfile_builds_the_daemon_image_with_the_tested_install_script() -> None:
    assert one("FROM") == "python:3.11-slim"
    runs = [args for kw, args in instructions() if kw == "RUN"]
    assert any("scripts/docker-install.sh" in r and "GTM_INSTALL_PYTHON=/opt/venv/bin/python" in r for r in runs)
    user = one("USER")
    assert user not in ("root", "0") and any("useradd" in r and user in r for r in runs)
    assert json.loads(one("ENTRYPOINT")) == ["gtm-connector"]
    assert json.loads(one("CMD")) == ["daemon", "--config-dir", "/config"]
    assert json.loads(one("VOLUME")) == ["/data", "/config"]
    # The last WORKDIR is the writable data volume: relative defaults (data/, offers/) land there.
    assert [args for kw, args in instructions() if kw == "WORKDIR"][-1] == "/data"
    assert one("EXPOSE") == "8765"
    healthcheck = one("HEALTHCHECK")
    assert "/healthz" in healthcheck and "urllib.request" in healthcheck and "CMD" in healthcheck
    env = " ".join(args for kw, args in instructions() if kw == "ENV")
    assert "GTM_MAPPINGS_DIR=/app/mappings" in env and "GTM_DAEMON_BIND=0.0.0.0" in env
    # Everything the image copies exists, and the package is installed from the copy.
    for kw, args in instructions():
        if kw == "COPY":
            *sources, _dest = shlex.split(args)
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: no such file in the repo"
    # The non-root user must own the volumes it writes.
    assert any("chown" in r and "/data" in r for r in runs)


def test_install_script_takes_its_target_from_the_environment() -> None:
    script = (REPO / "scripts" / "docker-install.sh").read_text()
    assert "GTM_INSTALL_PYTHON" in script and "GTM_INSTALL_SRC" in script
    assert "[test]" not in script  # runtime dependencies only


@pytest.mark.slow
def test_install_script_in_a_fresh_venv_gives_a_working_cli(tmp_path: Path) -> None:
    # The image's COPY steps, then its RUN step, with a venv in place of /opt/venv.
    src = tmp_path / "app"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("connector", "mappings", "scripts"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {**os.environ, "GTM_INSTALL_PYTHON": str(python), "GTM_PIP_ARGS": "--quiet"}
    env.pop("VIRTUAL_ENV", None)
    started = time.monotonic()
    install = subprocess.run(["sh", str(src / "scripts" / "docker-install.sh")], env=env, capture_output=True,
                             text=True, timeout=600)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    print(f"docker-install.sh into a fresh venv: {time.monotonic() - started:.1f}s")

    cli = venv / "bin" / "gtm-connector"
    run_env = {**os.environ, "GTM_MAPPINGS_DIR": str(src / "mappings"), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    help_out = subprocess.run([str(cli), "--help"], env=run_env, capture_output=True, text=True, timeout=60,
                              cwd=tmp_path)
    assert help_out.returncode == 0 and "daemon" in help_out.stdout and "run-job" in help_out.stdout
    files = sorted(str(p) for p in (REPO / "config" / "two-orgs").glob("*.toml"))
    check = subprocess.run([str(cli), "config", "check", *files, "--skip-secrets"], env=run_env,
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.count(": ok (org ") == 2
    # Runtime dependencies only: the test extras stay out of the image.
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('pytest') is None)"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "True"
