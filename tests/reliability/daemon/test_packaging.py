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
    (src / "config").mkdir()
    shutil.copy2(REPO / "config" / "demo.toml", src / "config" / "demo.toml")
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
    # ... and so do the sandboxes (their own package and extra): the command says how to get them
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('trustme') is None)"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "True"
    sandbox = subprocess.run([str(cli), "sandbox", "org"], env=run_env, capture_output=True, text=True, timeout=60,
                             cwd=tmp_path)
    assert sandbox.returncode == 2 and "pip install 'gtm-connector[sandbox]'" in sandbox.stderr
    demo = subprocess.run([str(cli), "demo"], env=run_env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert demo.returncode == 2 and "pip install 'gtm-connector[sandbox]'" in demo.stderr


# ------------------------------------------------------------------ the wheel (issues 12.6, 12.7)
def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_build_asks_for_the_setuptools_that_reads_its_license_field() -> None:
    from packaging.requirements import Requirement
    from packaging.version import Version

    doc = _pyproject()
    (setuptools,) = [Requirement(r) for r in doc["build-system"]["requires"] if Requirement(r).name == "setuptools"]
    if isinstance(doc["project"]["license"], str):  # an SPDX expression: setuptools 77 or later (PEP 639)
        assert not setuptools.specifier.contains(Version("76.1")), setuptools
        assert setuptools.specifier.contains(Version("77.0.0")), setuptools


def test_every_mapping_set_and_the_demo_config_ship_in_the_wheel() -> None:
    data_files = _pyproject()["tool"]["setuptools"]["data-files"]
    shipped = {f for patterns in data_files.values() for pattern in patterns for f in REPO.glob(pattern)}
    needed = {f for f in (REPO / "mappings").rglob("*") if f.is_file()} | {REPO / "config" / "demo.toml"}
    assert needed <= shipped, f"add to [tool.setuptools.data-files]: {sorted(map(str, needed - shipped))}"
    for target, patterns in data_files.items():  # each lands where connector.resources looks
        for f in (g for p in patterns for g in REPO.glob(p)):
            assert target == str(Path("share/gtm-connector") / f.parent.relative_to(REPO)), (target, f)


def _copy_project(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("connector", "gtm_sandbox", "mappings", "config"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    return dest


def _fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    return path / "bin"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "GTM_MAPPINGS_DIR", "GTM_CONFIG_DIR",
                                                             "PYTHONPATH")}
    return {**env, **extra}


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_finds_its_mappings_and_runs_the_demo(tmp_path: Path) -> None:
    src = _copy_project(tmp_path / "src")
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(src)],
                           capture_output=True, text=True, timeout=600, env=_clean_env())
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("gtm_connector-*.whl")
    shutil.rmtree(src)  # nothing of the source tree may be what makes the install work
    bin_dir = _fresh_venv(tmp_path / "venv")
    # the demo runs against the sandboxes: their extra brings what they need
    install = subprocess.run([str(bin_dir / "pip"), "install", "--quiet", "--disable-pip-version-check",
                              f"{wheel}[sandbox]"],
                             capture_output=True, text=True, timeout=600, env=_clean_env())
    assert install.returncode == 0, install.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"  # not the repo: no mappings/ or config/ in the working directory
    elsewhere.mkdir()
    cli = str(bin_dir / "gtm-connector")

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, *args], capture_output=True, text=True, timeout=300, cwd=elsewhere,
                              env=_clean_env(**env))

    files = sorted(str(p) for p in (REPO / "config" / "two-orgs").glob("*.toml"))
    check = run("config", "check", *files, "--skip-secrets")
    assert check.returncode == 0, check.stderr
    assert check.stdout.count(": ok (org ") == 2 and "mapping gtm-v2" in check.stdout

    demo = run("demo", "--data-dir", str(tmp_path / "demo"))
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "7,260.00" in demo.stdout

    # GTM_MAPPINGS_DIR still wins: a partner's own set, by name, from its own folder
    own = tmp_path / "partner-mappings"
    shutil.copytree(REPO / "mappings" / "gtm-v2", own / "partner-v1")
    partner = tmp_path / "partner.toml"
    text = (REPO / "config" / "two-orgs" / "acme.toml").read_text()
    assert 'mapping = "gtm-v2"' in text
    partner.write_text(text.replace('mapping = "gtm-v2"', 'mapping = "partner-v1"'))
    assert run("config", "check", str(partner), "--skip-secrets", GTM_MAPPINGS_DIR=str(own)).returncode == 0
    unset = run("config", "check", str(partner), "--skip-secrets")
    assert unset.returncode == 2 and "mapping set 'partner-v1' not found" in unset.stderr


@pytest.mark.slow
def test_the_editable_install_gives_no_same_name_folder_warning(tmp_path: Path) -> None:
    src = _copy_project(tmp_path / "src")
    bin_dir = _fresh_venv(tmp_path / "venv")
    install = subprocess.run([str(bin_dir / "pip"), "install", "-v", "--no-deps", "--disable-pip-version-check",
                              "-e", str(src)], capture_output=True, text=True, timeout=600, env=_clean_env())
    assert install.returncode == 0, install.stderr[-3000:]
    output = install.stdout + install.stderr  # -v: the build backend's own warnings are shown
    assert "Please be careful with folders" not in output and "meta path finder" not in output, output[-3000:]
    where = subprocess.run([str(bin_dir / "python"), "-c", "import connector; print(connector.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert where.stdout.strip() == str(src / "connector" / "__init__.py")
