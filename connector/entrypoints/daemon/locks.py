"""One daemon per SQLite file.

PostgreSQL arbitrates several daemons with advisory locks; SQLite has none, so a daemon
holds an exclusive ``flock`` on ``<database>.daemon.lock`` for as long as it runs. The
kernel drops the lock when the process dies, however it dies: no stale lock to clean up.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from sqlalchemy import make_url


class AlreadyRunning(RuntimeError):
    """Another daemon holds the SQLite database's lock file."""


def sqlite_file(database_url: str) -> Path | None:
    """The database file of a SQLite URL; None for PostgreSQL or an in-memory database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    return Path(database).expanduser().resolve()


class InstanceLock:
    """Exclusive lock file beside a SQLite database, held until ``release``."""

    def __init__(self, database: Path, owner: str) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".daemon.lock")
        self.owner = owner
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the daemon's lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise AlreadyRunning(
                f"another gtm-connector daemon ({holder}) already runs on the SQLite database {self.database} "
                f"(lock file {self.path}). SQLite takes one daemon; stop it first, or use PostgreSQL "
                f"(database_url_env) to run several instances."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"instance {self.owner}, pid {os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
