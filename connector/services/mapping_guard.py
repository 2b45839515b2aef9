"""The mapping checked against the org's describe, before the mirror trusts it.

``MappingGuard.ensure()`` runs before a mirror run. The first time in a process (and again
once ``sync.describe_recheck_minutes`` have passed) it fetches the describes of every mapped
object and of the write-back target in one ``/composite`` call, with ``If-Modified-Since``
set to the Last-Modified of the last check that passed for this mapping (stored with the
mapping's hash in ``mapping_checks``; another mapping or API version re-checks fully). All
304: nothing changed, still fine. Otherwise the changed describes go through
``connector.mapping_check`` and any error stops the org's mirror with a ``MappingError``,
one line per field. Between checks an idle cycle costs no call: the guard remembers the
pass in memory. A query that fails with INVALID_FIELD / INVALID_TYPE / NOT_FOUND, or an
object that turns up missing, triggers a full check at once, so the operator reads which
field is wrong instead of a raw SOQL error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import structlog

from connector.errors import MappingError, PermanentError
from connector.mapping_check import Problem, check_mapping, errors_of, mapping_error
from connector.mappings import MappingSet, WritebackTarget
from connector.services.ports import OrgContext, UnitOfWorkFactory

# Query errors that mean the mapping names something the org doesn't have (any more).
SCHEMA_ERRORS = frozenset({"INVALID_FIELD", "INVALID_TYPE", "NOT_FOUND"})
MAPPING_FILES = ("mapping.toml", "vocabularies.toml", "writeback.toml")


class DescribeAnswer(Protocol):
    status: int
    body: Any
    headers: Any

    @property
    def ok(self) -> bool: ...

    @property
    def error_code(self) -> str | None: ...

    @property
    def message(self) -> str: ...


class DescribeReader(Protocol):
    """What the guard needs from the org (``connector.adapters.salesforce.SalesforceOrg``)."""

    def describes(
        self, sobjects: Sequence[str], *, if_modified_since: str | None = None
    ) -> dict[str, DescribeAnswer]: ...


@dataclass
class CheckResult:
    problems: list[Problem] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # sObjects whose describe came back (200 or 404)
    unchanged: list[str] = field(default_factory=list)  # 304: not modified since the last passed check
    last_modified: str | None = None

    @property
    def errors(self) -> list[Problem]:
        return errors_of(self.problems)

    @property
    def ok(self) -> bool:
        return not self.errors


def mapping_hash(mapping: MappingSet, api_version: str, writeback: WritebackTarget | None) -> str:
    """What a passed check vouches for: the mapping files, the API version and the write-back target."""
    digest = hashlib.sha256(f"v{api_version}\n".encode())
    for name in MAPPING_FILES:
        path = mapping.path / name
        digest.update(path.read_bytes() if path.exists() else b"")
    if writeback is not None:
        digest.update(f"{writeback.sobject}.{writeback.external_id}".encode())
    return digest.hexdigest()


def _latest(dates: Iterable[str]) -> str | None:
    best: tuple[datetime, str] | None = None
    for text in dates:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if best is None or when > best[0]:
            best = (when, text)
    return best[1] if best else None


class MappingGuard:
    def __init__(
        self,
        org: DescribeReader,
        uow: UnitOfWorkFactory,
        mapping: MappingSet,
        org_id: str,
        *,
        alias: str,
        api_version: str,
        writeback: WritebackTarget | None,
        recheck_minutes: int,
        column_scale: Callable[[str, str], int | None],
        column_length: Callable[[str, str], int | None] = lambda table, column: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        log: Any = None,
    ) -> None:
        self.org = org
        self.uow = uow
        self.mapping = mapping
        self.org_id = org_id
        self.alias = alias
        self.api_version = api_version
        self.writeback = writeback
        self.recheck = timedelta(minutes=recheck_minutes)
        self.column_scale = column_scale
        self.column_length = column_length
        self.clock = clock
        self.log = log or structlog.get_logger("connector.mapping_guard").bind(org=alias)
        self.passed_at: datetime | None = None  # in this process
        self.absent: set[str] = set()  # optional objects the org lacked at the last check

    # -------------------------------------------------------------- the online check

    def check(self, *, conditional: bool = True) -> CheckResult:
        """Fetch the describes (one call per 25 objects) and check what changed since the
        last passed check (``conditional``) or everything. A passing result is stored."""
        digest = mapping_hash(self.mapping, self.api_version, self.writeback)
        with self.uow() as uow:
            stored = uow.mapping_checks.get(self.org_id, self.mapping.name)
        since = stored.describe_last_modified if conditional and stored and stored.mapping_hash == digest else None
        sobjects = [o.sobject for o in self.mapping.in_sync_order()]
        if self.writeback is not None:
            sobjects.append(self.writeback.sobject)
        answers = self.org.describes(sobjects, if_modified_since=since)
        result = CheckResult()
        describes: dict[str, Any] = {}
        for name, answer in answers.items():
            if answer.status == 304:
                result.unchanged.append(name)
                continue
            if answer.ok:
                describes[name] = answer.body
            elif answer.status == 404 or answer.error_code in SCHEMA_ERRORS:
                describes[name] = None  # the org has no such object (at this API version)
            else:
                raise PermanentError(f"describe {name}: Salesforce answered {answer.status} {answer.error_code}: "
                                     f"{answer.message}")
            result.checked.append(name)
        result.last_modified = _latest(a.headers.get("Last-Modified", "") for a in answers.values()) or since
        result.problems = check_mapping(self.mapping, describes, api_version=self.api_version,
                                        column_scale=self.column_scale, column_length=self.column_length,
                                        objects=result.checked,
                                        writeback=self.writeback)
        self.absent = {p.sobject for p in result.problems if p.field is None and p.severity == "warning"}
        if result.ok:
            with self.uow() as uow:
                uow.mapping_checks.upsert(self.org_id, self.mapping.name, mapping_hash=digest,
                                          describe_last_modified=result.last_modified,
                                          checked_at=self.clock().astimezone(UTC))
                uow.commit()
        self.log.info("mapping.checked", mapping=self.mapping.name, checked=len(result.checked),
                      unchanged=len(result.unchanged), errors=len(result.errors),
                      warnings=len(result.problems) - len(result.errors))
        return result

    # -------------------------------------------------------------- around the mirror

    def due(self) -> bool:
        return self.passed_at is None or self.clock() - self.passed_at >= self.recheck

    def ensure(self, *, conditional: bool = True) -> CheckResult | None:
        """Check unless a check passed in this process less than the interval ago; raise
        MappingError (one line per field) when the mapping does not fit the org."""
        if not self.due():
            return None
        result = self.check(conditional=conditional)
        if not result.ok:
            self.passed_at = None
            self.log.error("mapping.mismatch", problems=[str(p) for p in result.errors])
            raise mapping_error(self.mapping, self.alias, result.problems)
        self.passed_at = self.clock()
        return result

    def explain(self, exc: PermanentError) -> MappingError | None:
        """After a query failed on a name: check everything at once; the mapping's problems
        if that is what it was, else None (the original error stands)."""
        if getattr(exc, "error_code", None) not in SCHEMA_ERRORS:
            return None
        self.passed_at = None
        try:
            self.ensure(conditional=False)
        except MappingError as mismatch:
            return mismatch
        return None

    def noticed_unavailable(self, sobjects: Iterable[str]) -> None:
        """The mirror found objects missing: unless the last check knew, check now."""
        new = set(sobjects) - self.absent
        if new:
            self.log.info("mapping.recheck", reason="object unavailable", objects=sorted(new))
            self.passed_at = None
            self.ensure(conditional=False)

    def run(self, mirror: Callable[[], Any]) -> Any:
        """``mirror()`` (a MirrorService run) behind the guard."""
        self.ensure()
        try:
            report = mirror()
        except PermanentError as exc:
            better = self.explain(exc)
            if better is not None:
                raise better from None
            raise
        self.noticed_unavailable(o.sobject for o in getattr(report, "objects", []) if o.status == "unavailable")
        return report


def writeback_target(runtime: OrgContext) -> WritebackTarget | None:
    """The write-back target as the org's config sets it (None when write-back is off)."""
    section = runtime.config.writeback
    if not section.enabled:
        return None
    mapped = runtime.mapping.writeback
    return replace(mapped, sobject=section.sobject or mapped.sobject,
                   external_id=section.external_id or mapped.external_id)


def build_guard(runtime: OrgContext, *, log: Any = None) -> MappingGuard:
    from connector.adapters.store import column_length, column_scale

    config = runtime.config
    return MappingGuard(runtime.salesforce(), runtime.uow, runtime.mapping, runtime.org_id, alias=runtime.alias,
                        api_version=config.salesforce.api_version, writeback=writeback_target(runtime),
                        recheck_minutes=config.sync.describe_recheck_minutes, column_scale=column_scale,
                        column_length=column_length,
                        clock=runtime.clock, log=log)
