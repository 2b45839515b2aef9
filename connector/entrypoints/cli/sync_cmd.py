"""`gtm-connector sync` (mirror the org now) and `gtm-connector status` (what the local
model holds per object: rows, cursor, last run, open dead letters, anomalies).

``sync`` runs the mirror job the way the daemon does (org lock, ``job_runs`` row, logs;
an API limit ends it cleanly as *stopped*) and shows a progress bar per object with its
records/s. ``status`` reads only the local database: no Salesforce call.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from connector.entrypoints.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ConfigDirOpt,
    ConfigOpt,
    DryRunOpt,
    JsonOpt,
    OrgOpt,
    Orgs,
    make_console,
    styled,
)
from connector.entrypoints.cli._output import emit_orgs, make_table, print_table
from connector.errors import MappingError

ObjectsOpt = Annotated[
    list[str] | None,
    typer.Option("--objects", help="mapping object keys or sObject names (repeat or comma-separate); default all"),
]
FullOpt = Annotated[bool, typer.Option("--full",
                                       help="re-read every record and soft-delete rows the org no longer has")]


def _when(value: Any) -> str:
    """A cursor or run time for people: seconds, UTC; the empty-object sentinel spelled out."""
    from datetime import datetime

    if value is None:
        return "-"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.year == 1970:
        return "no records yet"
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def sync(
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    objects: ObjectsOpt = None,
    full: FullOpt = False,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Mirror GTM records from the org(s) into the local model now (incremental unless --full)."""

    console = make_console()
    failed = False
    docs: list[dict[str, Any]] = []
    orgs = Orgs(config, org, config_dir)
    for runtime in orgs:
        wanted = _check_objects(runtime, _split(objects))
        code, doc = _sync_one(runtime, console, wanted, full=full, dry_run=dry_run, as_json=as_json, stop=orgs.stop)
        failed |= code == EXIT_FAILED
        orgs.note(code)  # a mapping that doesn't fit the org is a configuration problem: 2
        docs.append(doc)
    if as_json:
        emit_orgs(docs)
    orgs.exit(failed)


def _check_objects(runtime: Any, objects: list[str] | None) -> list[str] | None:
    """Refuse an unknown --objects name before anything runs (a usage error, not a failed run)."""
    if not objects:
        return None
    unknown = runtime.mapping.unknown_objects(objects)
    if unknown:
        raise typer.BadParameter(f"unknown object(s) {', '.join(unknown)}; the mapping {runtime.mapping.name} has "
                                 f"{runtime.mapping.describe_objects()} (or their sObject names)",
                                 param_hint="--objects")
    return objects


def _sync_one(runtime: Any, console: Any, objects: list[str] | None, *, full: bool, dry_run: bool, as_json: bool,
              stop: threading.Event | None = None) -> tuple[int, dict[str, Any]]:
    """Mirror one org; its exit code (2 when its mapping does not fit the org's describe) and its JSON document."""
    from contextlib import nullcontext

    from connector.instance import default_instance_id
    from connector.jobs import Job, run_job
    from connector.services.mirror import MirrorService, PageProgress

    holder: dict[str, Any] = {}
    progress = None if as_json or not console.is_terminal else _progress_bars(console)
    tasks: dict[str, Any] = {}

    def on_page(p: PageProgress) -> None:
        if progress is None:
            return
        rate = f"{p.fetched / p.seconds:,.0f}" if p.seconds > 0 else "-"
        if p.sobject not in tasks:
            tasks[p.sobject] = progress.add_task(p.sobject, total=max(p.total, 1), rate=rate)
        progress.update(tasks[p.sobject], completed=p.fetched, total=max(p.total, p.fetched, 1), rate=rate)

    def job(rt: Any, *, log: Any, dry_run: bool = False, stop: threading.Event | None = None) -> dict[str, int]:
        service = MirrorService(rt.salesforce(), rt.uow, rt.mapping, rt.org_id,
                                lookback_seconds=rt.config.sync.lookback_seconds, log=log, progress=on_page,
                                stop=stop, clock=rt.clock)
        try:
            report = rt.mapping_guard().run(
                lambda: service.run(objects or rt.config.sync.objects, full=full, dry_run=dry_run))
        except MappingError:
            holder["mapping_error"] = True  # run_job keeps only the message: remember it is the mapping
            raise
        holder["report"] = report
        return report.counts()

    with progress or nullcontext():
        outcome = run_job(runtime, "mirror", instance_id=default_instance_id(), dry_run=dry_run,
                          registry={"mirror": Job(job, stoppable=True)}, stop=stop)
    report = holder.get("report")
    doc = {
            "org": outcome.org, "status": outcome.status, "error": outcome.error, "api_calls": outcome.api_calls,
            "objects": [{"object": o.sobject, "key": o.key, "idle": o.idle, "fetched": o.fetched,
                         "inserted": o.inserted, "updated": o.updated, "deleted": o.deleted,
                         "quarantined": o.quarantined, "anomalies": o.anomalies, "seconds": o.seconds,
                         "records_per_s": round(o.rate, 1), "status": o.status,
                         "cursor": o.cursor.isoformat() if o.cursor else None}
                        for o in (report.objects if report else [])],
    }
    if not as_json:
        _print_report(console, runtime.alias, outcome, report, dry_run)
    if outcome.status != "failed":
        return EXIT_OK, doc
    return (EXIT_USAGE if holder.get("mapping_error") else EXIT_FAILED), doc


def _progress_bars(console: Any) -> Any:
    """A bar per object with its records/s, for a terminal (rich.progress is imported only then)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]} rec/s"), TimeElapsedColumn(), console=console, transient=False)


def _print_report(console: Any, alias: str, outcome: Any, report: Any, dry_run: bool) -> None:
    title = f"{alias}: sync {outcome.status}" + (" (dry run: nothing written)" if dry_run else "")
    if report is not None:
        counts = ("fetched", "inserted", "updated", "deleted", "quarantined", "anomalies", "rec/s")
        table = make_table("object", *counts, "cursor (UTC)", title=title, keys=("object", "cursor (UTC)"),
                           amounts=counts)
        for o in report.objects:
            if o.status == "unavailable":
                table.add_row(o.sobject, styled("not in this org", "yellow"), "", "", "", "", "", "", "-")
                continue
            if o.idle:
                table.add_row(o.sobject, "idle", "", "", "", "", "", "", _when(o.cursor))
                continue
            table.add_row(o.sobject, str(o.fetched), str(o.inserted), str(o.updated), str(o.deleted),
                          str(o.quarantined), str(o.anomalies), f"{o.rate:,.0f}", _when(o.cursor))
        print_table(console, table)
        console.print(f"Salesforce API calls: {report.api_calls if report.api_calls is not None else '?'}")
    else:
        console.print(title)
    if outcome.error:
        console.print(outcome.error, style="yellow" if outcome.status == "stopped" else "red")


def status(
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    as_json: JsonOpt = False,
) -> None:
    """Per object: local rows, cursor, last run, open dead letters and anomalies (no API calls)."""

    console = make_console()
    orgs = Orgs(config, org, config_dir, local_only=True)
    docs = [org_status(runtime) for runtime in orgs]
    if as_json:
        emit_orgs(docs)
    else:
        for doc in docs:
            _print_status(console, doc)
    orgs.exit()


def org_status(runtime: Any) -> dict[str, Any]:
    """The status document of one org, from the local model only."""
    from datetime import UTC

    from connector.services.attention import read_attention

    org_id = runtime.org_id
    with runtime.uow() as uow:
        states = {s.object_name: s for s in uow.sync_state.all(org_id)}
        letters = uow.dead_letters.open(org_id)
        anomalies = uow.anomalies.list(org_id)
        drafts = uow.offer_drafts.list(org_id)
        last_mirror = uow.job_runs.list(org_id, job="mirror", limit=1)
        attention = read_attention(uow, org_id, runtime.mapping, today=runtime.clock().astimezone(UTC).date())
        objects = []
        for obj in runtime.mapping.in_sync_order():
            repo = uow.mirror(obj.name)
            state = states.get(obj.sobject)
            objects.append({
                "object": obj.sobject,
                "key": obj.name,
                "rows": repo.count(org_id),
                "deleted": repo.count(org_id, include_deleted=True) - repo.count(org_id),
                "cursor": state.cursor.isoformat() if state and state.cursor else None,
                "last_run": state.last_run_at.isoformat() if state and state.last_run_at else None,
                "last_status": state.last_status if state else None,
                "last_full": state.last_full_at.isoformat() if state and state.last_full_at else None,
                "dead_letters": sum(1 for d in letters if d.source == "mirror" and d.object_name == obj.sobject),
                "anomalies": sum(1 for a in anomalies if a.object_name == obj.sobject),
            })
    by_source: dict[str, int] = {}
    for letter in letters:
        by_source[letter.source] = by_source.get(letter.source, 0) + 1
    run = last_mirror[0] if last_mirror else None
    return {
        "org": runtime.alias,
        "org_id": org_id,
        "objects": objects,
        "dead_letters": by_source,
        "anomalies": len(anomalies),
        "attention": attention.as_json(),
        "offer_drafts": {d.draft_key: {"status": d.status, "offer_id": d.sf_id, "last_error": d.last_error}
                         for d in drafts},
        "last_mirror_run": None if run is None else {
            "status": run.status, "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None, "error": run.error,
            "dry_run": run.dry_run},
    }


def _print_status(console: Any, doc: dict[str, Any]) -> None:
    numbers = ("rows", "deleted", "dead letters", "anomalies")
    table = make_table("object", "rows", "deleted", "cursor (UTC)", "last sync (UTC)", "dead letters", "anomalies",
                       title=f"{doc['org']} ({doc['org_id']})", keys=("object", "cursor (UTC)", "last sync (UTC)"),
                       amounts=numbers)
    for o in doc["objects"]:
        last = f"{_when(o['last_run'])} {o['last_status']}" if o["last_run"] else "never"
        table.add_row(o["object"], str(o["rows"]), str(o["deleted"]), _when(o["cursor"]), last,
                      str(o["dead_letters"]) if o["dead_letters"] else "",
                      str(o["anomalies"]) if o["anomalies"] else "")
    print_table(console, table)
    run = doc["last_mirror_run"]
    if run:
        console.print(f"last mirror run: {run['status']}{' (dry run)' if run['dry_run'] else ''} "
                      f"at {_when(run['started_at'])} UTC"
                      + (f" ({run['error']})" if run["error"] else ""))
    if doc["dead_letters"]:
        console.print("open dead letters: " + ", ".join(f"{k} {v}" for k, v in sorted(doc["dead_letters"].items())))
    for flag in doc["attention"]["orders"] + doc["attention"]["not_provisionable"]:
        console.print(f"attention: {flag['message']}", style="yellow")
    if doc["offer_drafts"]:
        drafts = sorted(doc["offer_drafts"].items())
        console.print("offer drafts: " + ", ".join(f"{k} ({v['status']})" for k, v in drafts))


def register(app: typer.Typer) -> None:
    app.command("sync")(sync)
    app.command("status")(status)
