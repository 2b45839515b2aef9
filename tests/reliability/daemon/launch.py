"""``python -m tests.reliability.daemon.launch --config-dir D --port P --instance-id I``:
the real daemon (``run_daemon``) with ``fake_jobs`` registered for mirror and invoicing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from connector.entrypoints.daemon import run_daemon
from connector.jobs import Job
from tests.reliability.daemon import fake_jobs

REGISTRY = {
    "mirror": Job(fake_jobs.mirror, stoppable=True),
    "invoicing": Job(fake_jobs.invoicing, stoppable=True),
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--config-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--instance-id", required=True)
    args = parser.parse_args()
    sys.exit(run_daemon(args.config_dir, port=args.port, instance_id=args.instance_id, registry=REGISTRY))
