"""`gtm-connector demo`: one full cycle against the local sandboxes (see ``connector.demo``).

    gtm-connector demo                     # rich progress and tables
    gtm-connector demo --json              # the same summary as JSON on stdout
    gtm-connector demo --data-dir /tmp/d   # where its SQLite file and the sandboxes' state live
    gtm-connector demo --database-url postgresql+psycopg://127.0.0.1/test

Exit 0 when every step succeeded, 1 otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from connector.entrypoints.cli._common import EXIT_FAILED, EXIT_OK, EXIT_STOPPED, EXIT_USAGE, make_console, styled
from connector.entrypoints.cli._output import emit_json, make_table, print_table


def demo(
    data_dir: Annotated[Path, typer.Option("--data-dir",
                                           help="where the demo keeps its SQLite file and state")] = Path(".demo"),
    database_url: Annotated[str | None, typer.Option("--database-url", help="run on this database instead "
                                                          "(e.g. PostgreSQL)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    config_path: Annotated[Path | None, typer.Option("--config", help="demo config (default config/demo.toml)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show the connector's log lines")] = False,
) -> None:
    """Run the end-to-end demo on the embedded defaults (no accounts, no network)."""
    from connector.entrypoints.cli.sandbox_cmd import SANDBOX_MISSING, sandbox_installed

    if not sandbox_installed():
        typer.echo(f"error: the demo runs against the local sandboxes; {SANDBOX_MISSING}", err=True)
        raise typer.Exit(EXIT_USAGE)
    from connector.demo import DemoOptions, run_demo
    from connector.logging import configure

    _check_options(data_dir, database_url, config_path)
    configure(json=False, level="INFO" if verbose else "ERROR")
    console = make_console(stderr=as_json)
    options = DemoOptions(data_dir=data_dir, database_url=database_url, config_path=config_path)
    with _progress(console) as progress:
        try:
            summary = run_demo(options, progress=progress)
        except Exception as exc:
            _database_failed(exc, database_url, data_dir)
            raise
    if as_json:
        emit_json(summary.as_json())
    else:
        print_summary(summary, console)
    # only the API limit stopped something: every step else done, every org's figures right
    stopped_early = (any(s.status == "stopped" for s in summary.steps)
                     and all(s.status in ("ok", "skipped", "stopped") for s in summary.steps)
                     and all(o.get("ok", True) for o in summary.orgs))
    raise typer.Exit(EXIT_OK if summary.ok else EXIT_STOPPED if stopped_early else EXIT_FAILED)


def _check_options(data_dir: Path, database_url: str | None, config_path: Path | None) -> None:
    """Usage errors before the sandboxes start, named by option (not by config/demo.toml)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from connector.config import redact_url

    if config_path is not None and not config_path.is_file():
        raise typer.BadParameter(f"{config_path} is not a file", param_hint="--config")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(f"cannot create {exc.filename}: {exc.strerror}", param_hint="--data-dir") from None
    if database_url is not None:
        try:
            backend = make_url(database_url).get_backend_name()
        except ArgumentError:
            backend = None
        if backend not in ("sqlite", "postgresql"):
            raise typer.BadParameter(f"{redact_url(database_url)!r}: use sqlite:///FILE or postgresql://USER@HOST/DB",
                                     param_hint="--database-url")


def _database_failed(exc: Exception, database_url: str | None, data_dir: Path) -> None:
    """Exit naming the option if ``exc`` says the demo's database can't be used; else return."""
    from connector.config import redact_url
    from connector.entrypoints.cli._common import database_problem

    found = database_problem(exc)
    if found is None:
        return
    where = f"--database-url {redact_url(database_url)}" if database_url else f"--data-dir {data_dir}"
    typer.echo(f"{where}: {found[0]}", err=True)
    raise typer.Exit(2 if found[1] else 1)


class _Steps:
    """Rich progress, one line per step: a spinner while it runs, its outcome after."""

    LABELS = {"setup": "Start the sandboxes", "mirror": "Mirror the org", "offers_push": "Push draft offers",
              "invoicing": "Invoice activated orders", "payment": "Customer pays (Stripe hosted page)",
              "webhooks": "Receive Stripe's signed webhooks", "payout": "Stripe pays out",
              "reconcile": "Reconcile payouts", "writeback": "Write results back to the org"}

    def __init__(self, console: Any) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(finished_text=styled("✓", "green")), TextColumn("{task.description}"),
                                 TimeElapsedColumn(), console=console)
        self.tasks: dict[str, Any] = {}

    def __call__(self, step: str, text: str) -> None:
        org, _, job = step.rpartition(": ")  # the second org's steps come as "alias: job"
        label = (f"{org}: " if org else "") + self.LABELS.get(job, job)
        if step not in self.tasks:
            self.tasks[step] = self.progress.add_task(f"{label}: {text}", total=1)
            return
        done = text.split(":", 1)[0] in ("ok", "skipped", "failed", "stopped") or step == "setup"
        colour = "red" if text.startswith("failed") else ("yellow" if text.startswith("skipped") else "")
        from rich.markup import escape

        # The description is rich markup (TextColumn): the step's own text is data, escaped.
        shown = f"[{colour}]{escape(text)}[/{colour}]" if colour else escape(text)
        self.progress.update(self.tasks[step], description=f"{label}: {shown}", completed=1 if done else 0)


class _progress:  # noqa: N801 - used as a context manager
    def __init__(self, console: Any) -> None:
        self.steps = _Steps(console)

    def __enter__(self) -> _Steps:
        self.steps.progress.start()
        return self.steps

    def __exit__(self, *exc: object) -> None:
        self.steps.progress.stop()


def print_summary(summary: Any, console: Any) -> None:
    data = summary.as_json()
    mirrored = make_table("object", "records", title="Mirrored from the org", keys=("object",), amounts=("records",))
    for obj, n in data["mirrored"].items():
        mirrored.add_row(obj, str(n))
    print_table(console, mirrored)

    invoices = make_table("order", "customer", "invoice", "status", "due date", "amount", "paid",
                          title="Stripe invoices (NET30)", keys=("order", "invoice", "status", "due date"),
                          amounts=("amount", "paid"))
    for inv in data["invoices"]:
        invoices.add_row(inv["order_number"] or inv["order_id"], inv["customer"] or "",
                         inv["number"] or inv["invoice_id"], inv["status"] or "", inv["due_date"] or "",
                         inv["amount"] or "", inv["amount_paid"] or "")
    print_table(console, invoices)

    seed = data["seed_003"]
    if seed:
        payout = make_table("", "amount", title=f"Seed 003: order {seed['order_number']} ({seed['customer']})",
                            keys=("",), amounts=("amount",))
        for label, key in (("subtotal", "subtotal"), ("Salesforce revenue share", "revenue_share"),
                           ("expected payout", "expected_payout"), ("actual payout (Stripe)", "actual_payout"),
                           ("difference", "difference")):
            value = seed[key]
            payout.add_row(label, f"${_thousands(value)}" if value is not None else "not paid out yet")
        payout.add_row("payout date", seed["payout_date"] or "-")
        payout.add_row("reconciliation", styled(seed["discrepancy"], "red") if seed["discrepancy"]
                       else (styled("matched", "green") if seed["actual_payout"] else "pending"))
        print_table(console, payout)

    wb = data["writeback"]
    run = wb["this_run"]
    records = make_table("order", "invoice status", "expected", "actual", "last error",
                         title=f"Write-back to {wb['target']} (this run: {run['written']} written, {run['failed']} "
                               f"rejected, {run['unchanged']} unchanged)",
                         keys=("order", "invoice status"), amounts=("expected", "actual"))
    for r in wb["records"]:
        records.add_row(r["order_number"] or r["order_id"], r["invoice_status"] or "", r["expected_payout"] or "",
                        r["actual_payout"] or "", r["last_error"] or "")
    print_table(console, records)

    letters = make_table("id", "source", "object", "record", "code", "reason", title="Dead letters (open)",
                         keys=("id", "source", "object", "record", "code"))
    for d in data["dead_letters"]:
        letters.add_row(str(d["id"]), d["source"], d["object"], d["record_id"], d["code"], d["reason"])
    print_table(console, letters)

    orgs = make_table("org", "issuer", "Stripe account", "invoices created by the connector", "adopted from Salesforce",
                      "seed 003 payout", title="Orgs: who issues the invoice", keys=("org", "issuer"),
                      amounts=("seed 003 payout",))
    for o in data["orgs"]:
        payout = o["seed_003_actual_payout"]
        orgs.add_row(o["alias"], o["issuer"], o["stripe_account"], str(o["invoices_created_by_connector"]),
                     str(o["invoices_adopted"]), f"${_thousands(payout)}" if payout else "not paid out yet")
    print_table(console, orgs)

    steps = make_table("step", "status", "detail", "s", title="Steps", keys=("step", "status"), amounts=("s",))
    for st in data["steps"]:
        steps.add_row(st["step"], st["status"], st["detail"], f"{st['duration_s']:.2f}")
    print_table(console, steps)
    this_run = data["this_run"]
    console.print(f"This run: {this_run['invoices_created']} invoice(s) created "
                  f"({this_run['stripe_invoice_creates']} POST /v1/invoices), "
                  f"{this_run['writeback_records_written']} record(s) written back "
                  f"({this_run['org_collection_upserts']} collections upserts); "
                  f"{this_run['org_api_calls']} Salesforce API calls, {this_run['stripe_api_calls']} Stripe calls.")
    console.print(data["message"], style="bold")
    console.print(f"State: {data['data_dir']} (database {data['database']})")
    if data.get("inspect"):
        console.print(f"Inspect what it left: {data['inspect']}")
    if data.get("dashboard"):
        console.print(f"See it in the dashboard: {data['dashboard']}  then open {data['dashboard_url']}")


def _thousands(value: str) -> str:
    whole, _, cents = value.partition(".")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}{int(whole.lstrip('-')):,}.{cents}"


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
