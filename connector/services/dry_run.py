"""What a dry run reports (shared by the services; ``connector.jobs`` re-exports it)."""

from __future__ import annotations

from collections.abc import Mapping


def dry_run_counts(counts: Mapping[str, int], renames: Mapping[str, str]) -> dict[str, int]:
    """A dry run's counts: what the real run would have done (written, sent, quarantined …)
    under a ``would_…`` name from ``renames``; facts it found (fetched, considered,
    unchanged, discrepancies) keep theirs. So no dry run reports, in ``job_runs``, the
    metrics or a table, a write it did not make under the name of the real one."""
    return {renames.get(k, k): v for k, v in counts.items()}
