"""A sandbox's state directory (``--state-dir``): what makes a restarted sandbox the same one
to its clients — keys, credentials, the port — and its data, saved on a clean stop and
whenever it changed, so a config file written once keeps working and a kill loses little.

The directory is the owner's alone (mode 0700) and every file in it is written 0600, the
secrets (the CA's key, client secret, API keys, signing secrets) and the rest alike.

    state = StateDir.open(Path("~/.gtm-sandbox/org"))
    state.write_secret("client_secret", secret)        # 0600, atomically
    state.settings()["port"]                           # state.json, a JSON object
    saver = Autosaver(org.save, state.path / "data.json", fingerprint, interval_s=2.0)
    saver.start(); ...; saver.stop()                   # one last save on the way out
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SETTINGS_FILE = "state.json"
CONNECTION_FILE = "connection.json"  # non-secret facts a config is written from (URLs, file paths, ids)


def write_private(path: Path, content: bytes | str) -> None:
    """Write ``content`` to ``path`` readable by the owner only (0600), via a temporary file
    renamed over it, so a crash never leaves half a key."""
    data = content.encode() if isinstance(content, str) else content
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing leftover keeps its mode otherwise
        os.write(fd, data)
    finally:
        os.close(fd)
    tmp.replace(path)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, for a sandbox that will want the same one after a restart: a server
    bound to a chosen port sets SO_REUSEADDR (cheroot does, but not for port 0), without which
    the last run's closing connections would hold the port for a minute."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class StateDir:
    path: Path

    @classmethod
    def open(cls, path: Path) -> StateDir:
        """The directory, made (0700) if missing; an existing one is narrowed to 0700."""
        path = Path(path).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{path} exists and is not a directory")
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def read_text(self, name: str) -> str | None:
        try:
            return (self.path / name).read_text("utf-8").strip()
        except FileNotFoundError:
            return None

    def read_bytes(self, name: str) -> bytes | None:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            return None

    def write_secret(self, name: str, content: bytes | str) -> Path:
        target = self.path / name
        write_private(target, content)
        return target

    def read_json(self, name: str) -> dict[str, Any]:
        text = self.read_text(name)
        if not text:
            return {}
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(f"{self.path / name}: not a JSON object")
        return value

    def write_json(self, name: str, value: dict[str, Any]) -> Path:
        return self.write_secret(name, json.dumps(value, indent=2, sort_keys=True) + "\n")

    def tighten(self) -> None:
        """Every file directly in the directory to 0600 (some are written by libraries)."""
        for entry in self.path.iterdir():
            if entry.is_file():
                os.chmod(entry, 0o600)

    def settings(self) -> dict[str, Any]:
        """``state.json``: the sandbox's own preferences (its port, for one)."""
        return self.read_json(SETTINGS_FILE)

    def port(self, given: int | None) -> tuple[int, bool]:
        """The port to listen on: ``given``, else the saved one, else a free one (kept from
        then on); and whether it is the saved one (busy: say so, don't pick another)."""
        saved = self.settings().get("port")
        if given is not None:
            return (given or free_port()), False
        if saved:
            return int(saved), True
        return free_port(), False

    def update_settings(self, **values: Any) -> None:
        self.write_json(SETTINGS_FILE, {**self.settings(), **values})


class Autosaver:
    """Saves a sandbox (``save(path)``) when ``fingerprint()`` — something cheap that moves
    when its data does — changed, checked every ``interval_s`` from a daemon thread; ``stop``
    saves once more if anything changed since. Files are left 0600."""

    def __init__(self, save: Callable[[Path], None], path: Path, fingerprint: Callable[[], object],
                 interval_s: float = 2.0) -> None:
        self._save = save
        self.path = path
        self._fingerprint = fingerprint
        self.interval_s = interval_s
        self._saved: object = fingerprint() if path.exists() else None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="sandbox-autosave", daemon=True)
        self.saves = 0

    def start(self) -> Autosaver:
        self._thread.start()
        return self

    def save_if_changed(self) -> bool:
        with self._lock:
            current = self._fingerprint()
            if current == self._saved and self.path.exists():
                return False
            self._save(self.path)
            os.chmod(self.path, 0o600)
            self._saved = current
            self.saves += 1
            return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.save_if_changed()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 5)
        self.save_if_changed()
