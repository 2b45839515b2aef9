"""Who is running a job: the instance id written on job runs and org locks."""

from __future__ import annotations

import os
import socket


def default_instance_id() -> str:
    """``host:pid``: unique among the processes sharing a database at one time."""
    return f"{socket.gethostname()}:{os.getpid()}"
