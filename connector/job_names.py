"""The jobs' names and the words an operator also uses for them: cheap to import (no
service is imported). ``connector.jobs`` re-exports all of it with the job table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from connector.config import JOBS as JOB_NAMES  # mirror, offers_push, invoicing, invoice_status, reconcile, writeback

# One vocabulary: a job is named as in JOBS (and in job_runs, metrics and [schedules]); the
# words an operator also uses for it — its command, the dead-letter source — are aliases.
JOB_ALIASES: dict[str, str] = {
    "sync": "mirror",
    "offers": "offers_push", "push": "offers_push", "offers-push": "offers_push",
    "invoice": "invoicing",
    "invoice-status": "invoice_status",
    "payouts": "reconcile", "reconciliation": "reconcile",
    "write-back": "writeback",
}
# Dead letters are filed under the job that made them, except reconcile's (``payouts``).
DEAD_LETTER_SOURCE_OF_JOB: dict[str, str] = {"reconcile": "payouts"}


class UnknownName(ValueError):
    """A job or dead-letter source name that is not in the vocabulary; says which are."""


def _known(names: Iterable[str], aliases: Mapping[str, str]) -> str:
    shown = []
    for name in names:
        words = [a for a, target in aliases.items() if target == name]
        shown.append(f"{name} ({', '.join(words)})" if words else name)
    return ", ".join(shown)


def job_name(name: str) -> str:
    """The job ``name`` means (``sync`` -> ``mirror``); UnknownName listing the valid ones."""
    word = name.strip().lower()
    for candidate in (word, word.replace("-", "_")):
        if candidate in JOB_NAMES:
            return candidate
    if word in JOB_ALIASES:
        return JOB_ALIASES[word]
    raise UnknownName(f"unknown job {name!r}; valid jobs: {_known(JOB_NAMES, JOB_ALIASES)}")


def dead_letter_source(name: str) -> str:
    """The dead-letter source ``name`` means (a source, a job or a command: ``reconcile``,
    ``sync``, ``invoice`` ...); UnknownName listing the valid ones."""
    from connector.adapters.store.tables import DEAD_LETTER_SOURCES

    word = name.strip().lower()
    if word in DEAD_LETTER_SOURCES:
        return word
    try:
        job = job_name(word)
    except UnknownName:
        job = None
    source = DEAD_LETTER_SOURCE_OF_JOB.get(job or "", job)
    if source in DEAD_LETTER_SOURCES:
        return source
    aliases = {a: DEAD_LETTER_SOURCE_OF_JOB.get(t, t) for a, t in JOB_ALIASES.items()}
    aliases.update({job: source for job, source in DEAD_LETTER_SOURCE_OF_JOB.items()})
    aliases = {a: t for a, t in aliases.items() if a not in DEAD_LETTER_SOURCES}
    raise UnknownName(f"unknown dead-letter source {name!r}; valid sources: {_known(DEAD_LETTER_SOURCES, aliases)}")
