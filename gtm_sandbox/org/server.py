"""The sandbox org as a real HTTPS server on 127.0.0.1, and ``SandboxOrg``, its handle.

TLS uses a CA made at start-up with ``trustme``; its PEM is written to ``ca_file`` so
clients verify the server like any other (``requests.Session().verify = ca_file``). The
server is cheroot (see ``gtm_sandbox/wsgi.py``) with its built-in TLS adapter, the
handshake done on the connection's worker thread (a client that never sends its hello holds
no one back, and is closed after ``idle_timeout_s``): connections are kept alive (HTTP/1.1) until idle for
``idle_timeout_s``, bodies over ``max_body_bytes`` get a 413, API requests whose URI is
over 16,384 bytes a 414 (URI and headers together: 431), and ``stop()`` closes every
connection, so tests can start and stop orgs freely.

    with SandboxOrg.start(data="demo") as org:
        sf = Salesforce(instance_url=org.instance_url, session_id=token, session=session)
        org.fail("query_more", status=401)      # next page: session expired
        org.counters()["api_calls"]
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gtm_sandbox.org.auth import ConnectedApp
from gtm_sandbox.org.billing import GtmBilling, RunResult
from gtm_sandbox.org.compression import bulk_response_encoding, decode_body, encode_body, response_encoding
from gtm_sandbox.org.control import DataSpec, OrgControl
from gtm_sandbox.org.data import ApiError, OrgData
from gtm_sandbox.org.gtm import GtmRules
from gtm_sandbox.org.identity import OrgIdentity
from gtm_sandbox.org.ids import make_id
from gtm_sandbox.org.jsonenc import loads
from gtm_sandbox.org.rest import OrgApi, Request, Response
from gtm_sandbox.org.schema import load_org_schema
from gtm_sandbox.org.xmlenc import to_xml, wants_xml
from gtm_sandbox.org.xmlread import answers_in_xml
from gtm_sandbox.snapshot import SnapshotError, read_snapshot, write_snapshot
from gtm_sandbox.wsgi import (
    IDLE_TIMEOUT_S,
    MAX_BODY_BYTES,
    BadRequestBody,
    BodyTooLarge,
    WsgiServer,
    read_body,
    request_headers,
    request_target,
    status_line,
)

# Bulk API 2.0's resources: their answers are compressed with gzip only.
_BULK_PATH = re.compile(r"^/services/data/v\d+\.\d/jobs/")
API_VERSION = "66.0"  # GTM objects exist from v64-v66 (see gtm_schema.toml)


# Salesforce's documented request limits (REST API, Status Codes and Error Responses): a
# URI over 16,384 bytes is a 414, a URI and headers over 16,384 bytes together a 431. Only
# the statuses are documented; the bodies here keep the API's error-list shape.
MAX_URI_BYTES = 16384
MAX_URI_AND_HEADER_BYTES = 16384


def _too_large(target: str, headers: dict[str, str]) -> Response | None:
    uri = len(target.encode("utf-8", "replace"))
    if uri > MAX_URI_BYTES:
        return Response.json(414, [{"message": f"The URI is {uri} bytes long; the limit is {MAX_URI_BYTES}.",
                                    "errorCode": "URI_TOO_LONG"}])
    # Each header line counted as "Name: value\r\n".
    total = uri + sum(len(k.encode("utf-8", "replace")) + len(v.encode("utf-8", "replace")) + 4
                      for k, v in headers.items())
    if total > MAX_URI_AND_HEADER_BYTES:
        return Response.json(431, [{"message": f"The URI and headers are {total} bytes long; the limit is "
                                               f"{MAX_URI_AND_HEADER_BYTES}.",
                                    "errorCode": "REQUEST_HEADER_FIELDS_TOO_LARGE"}])
    return None


class OrgApp:
    """The org as a WSGI app: ``/_sandbox/…`` to the control API, the rest to ``OrgApi``.
    API request and response bodies may be compressed (see ``compression.py``); answers are
    XML for a client that asks for it (``xmlenc.py``)."""

    def __init__(self, api: OrgApi, control: OrgControl, max_body_bytes: int = MAX_BODY_BYTES):
        self.api = api
        self.control = control
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        try:
            body = read_body(environ)
        except BodyTooLarge:
            resp = Response.json(413, [{"message": "The request body is too large.", "errorCode": "REQUEST_TOO_LARGE"}])
        except BadRequestBody as exc:
            resp = Response.json(400, [{"message": f"The request body could not be read: {exc}",
                                        "errorCode": "BAD_REQUEST"}])
        else:
            target, headers = request_target(environ), request_headers(environ)
            req = Request.build(method, target, headers, body)
            if req.path.startswith("/_sandbox/"):
                resp = self.control.handle(req)
            else:
                resp = _too_large(target, headers) or self._api(req)
        # The API's answers only: the control API is the tests' own, and stays plain JSON.
        api = not request_target(environ).startswith("/_sandbox/")
        if (api and resp.body and resp.content_type.startswith("application/json")
                and (wants_xml(environ.get("HTTP_ACCEPT"))
                     or answers_in_xml(environ.get("HTTP_ACCEPT"), environ.get("CONTENT_TYPE")))):
            resp.body, resp.content_type = to_xml(loads(resp.body.encode("utf-8"))), "application/xml;charset=UTF-8"
        payload = resp.body.encode("utf-8") if resp.body is not None else b""
        headers = [] if resp.status == 204 else [("Content-Type", resp.content_type)]
        choose = bulk_response_encoding if _BULK_PATH.match(environ.get("PATH_INFO", "")) else response_encoding
        coding = choose(environ.get("HTTP_ACCEPT_ENCODING")) if payload and api else None
        if coding is not None:
            payload = encode_body(payload, coding)
            headers.extend([("Content-Encoding", coding), ("Vary", "Accept-Encoding")])
        headers.append(("Content-Length", str(len(payload))))
        headers.extend(resp.headers.items())
        start_response(status_line(resp.status), headers)
        return [b""] if method == "HEAD" else [payload]

    def _api(self, req: Request) -> Response:
        try:
            req.body = decode_body(req.body, req.headers.get("content-encoding"), self.max_body_bytes)
        except ApiError as err:
            return Response.error(err)
        return self.api.handle(req)


class SandboxOrg:
    """A running sandbox org. Build with ``SandboxOrg.start(...)``; stop with ``stop()`` or
    use it as a context manager. Control methods delegate to ``OrgControl``."""

    def __init__(self, server: WsgiServer, control: OrgControl, workdir: Path, app: ConnectedApp,
                 ca_file: Path, private_key_file: Path, owns_workdir: bool):
        self._server = server
        self.control = control
        self.workdir = workdir
        self._owns_workdir = owns_workdir
        self.port: int = server.port
        self.login_url = f"https://127.0.0.1:{self.port}"
        self.instance_url = self.login_url
        self.ca_file = ca_file
        self.private_key_file = private_key_file
        self.client_id = app.client_id
        self.client_secret = app.client_secret
        self.username = app.username
        self.password = app.password
        self.org_id = app.org_id
        self.user_id = app.user_id
        self.api_version = API_VERSION
        self._refresh_token = ""
        self._stopped = False

    @classmethod
    def start(
        cls,
        data: DataSpec = "demo",
        batch_size: int = 2000,
        port: int = 0,
        *,
        renamed: Mapping[str, str] | None = None,
        dropped: tuple[str, ...] = (),
        org_number: int = 1,
        workdir: Path | None = None,
        jwt_public_key_file: Path | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        identity: OrgIdentity | None = None,
        version_gate: bool = True,
    ) -> SandboxOrg:
        """Start an org on 127.0.0.1 (``port=0``: a free port) in a background thread.

        ``data``: "demo", an int N (generated bench records) or None. ``jwt_public_key_file``:
        the certificate (or public key) JWT assertions must be signed for; without it a key
        pair is made and the private key written to ``private_key_file``. ``renamed`` and
        ``dropped`` start an org whose schema differs from the reference (see
        ``load_org_schema``), as a partner's org may. ``max_body_bytes``: larger request
        bodies get a 413; ``idle_timeout_s``: idle keep-alive connections are closed after it.
        ``identity``: the CA and connected-app credentials to serve with (a restarted org
        the same to its clients, see ``identity.py``); without it a fresh one is made.
        ``version_gate=False`` is for benchmarks against peers pinned to API versions older
        than the GTM objects (v61, v62): every object then exists at every version, which a
        real org never shows; keep the default everywhere else."""
        owns = workdir is None
        workdir = Path(tempfile.mkdtemp(prefix="gtm-sandbox-org-")) if workdir is None else Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        if identity is None:
            identity = OrgIdentity.new(jwt_key=jwt_public_key_file is None)
        ca = identity.ca()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        # cheroot's TLS adapter loads the server's certificate and key from files.
        cert_file, key_file = workdir / "server_cert.pem", workdir / "server_key.pem"
        cert.cert_chain_pems[0].write_to_path(str(cert_file))
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(str(cert_file), append=True)
        key_file.touch(mode=0o600)
        cert.private_key_pem.write_to_path(str(key_file))
        ca_file = workdir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        private_key_file = workdir / "jwt_private_key.pem"
        if jwt_public_key_file is not None:
            public_pem = _public_key_pem(Path(jwt_public_key_file).read_bytes())
        else:
            public_pem = identity.jwt_public_key_pem()
            assert identity.jwt_private_key_pem is not None
            private_key_file.touch(mode=0o600)
            private_key_file.write_bytes(identity.jwt_private_key_pem)
        schema = load_org_schema(renamed=renamed, dropped=dropped, version_gate=version_gate)
        org_id = make_id("00D", org_number, pod="Sb")  # org_number: several orgs side by side
        app = ConnectedApp(
            client_id=identity.client_id,
            client_secret=identity.client_secret,
            public_key_pem=public_pem,
            username=identity.username,
            password=identity.password,
            user_id=identity.user_id,
            org_id=org_id,
            audiences=(),
        )
        data_store = OrgData(schema)
        data_store.rules = GtmRules()
        api = OrgApi(data_store, app, login_url="", instance_url="", batch_size=batch_size)
        control = OrgControl(api, org_id)
        server = WsgiServer(OrgApp(api, control, max_body_bytes), port=port, name="sandbox-org",
                            tls=(cert_file, key_file), max_body_bytes=max_body_bytes, idle_timeout_s=idle_timeout_s)
        real_port = server.port
        login_url = f"https://127.0.0.1:{real_port}"
        api.login_url = api.instance_url = login_url
        # JWT audience: the login URL (as on login.salesforce.com / test.salesforce.com).
        app.audiences = (login_url, login_url + "/")
        control.load(data)
        handle = cls(server, control, workdir, app, ca_file, private_key_file, owns)
        handle._refresh_token = api.sessions.issue_refresh_token()
        server.start()
        return handle

    # ------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.control.billing.unlink()
        self._server.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SandboxOrg:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ facts for clients and configs

    def connection_info(self) -> dict[str, str]:
        return {
            "instance_url": self.instance_url,
            "login_url": self.login_url,
            "ca_file": str(self.ca_file),
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "username": self.username,
            "password": self.password,
            "api_version": self.api_version,
            "org_id": self.org_id,
            "private_key_file": str(self.private_key_file),
            "refresh_token": self._refresh_token,
        }

    def refresh_token(self) -> str:
        """The refresh token the org issued for its connected app at start (for the refresh
        token flow with ``client_id`` and ``client_secret``); revoked by
        ``/services/oauth2/revoke``."""
        return self._refresh_token

    def issue_refresh_token(self) -> str:
        """Another refresh token for the connected app, as a new authorization would give."""
        return self.control.api.sessions.issue_refresh_token()

    @property
    def data(self) -> OrgData:
        return self.control.data

    @property
    def demo_ids(self) -> dict[str, str]:
        return self.control.demo_ids

    # ------------------------------------------------------------ control (see OrgControl)

    def reset(self, data: DataSpec = "demo") -> dict[str, str]:
        return self.control.reset(data)

    def counters(self) -> dict[str, Any]:
        return self.control.counters()

    @property
    def api_calls(self) -> int:
        return int(self.control.counters()["api_calls"])

    def calls(self, endpoint: str) -> int:
        return int(self.control.counters()["calls"].get(endpoint, 0))

    def reset_counters(self) -> None:
        self.control.reset_counters()

    def rename_field(self, sobject: str, old: str, new: str) -> None:
        """Rename a field of the running org (see ``OrgControl.rename_field``)."""
        self.control.rename_field(sobject, old, new)

    def fail(self, endpoint: str, *, times: int = 1, status: int = 503, error_code: str | None = None,
             message: str | None = None, skip: int = 0, expire_sessions: bool = False) -> None:
        self.control.fail(endpoint, times=times, status=status, error_code=error_code, message=message,
                          skip=skip, expire_sessions=expire_sessions)

    def clear_faults(self) -> None:
        self.control.clear_faults()

    def fail_bulk_jobs(self, message: str = "QUERY_TIMEOUT: Your query request was running for too long.", *,
                       times: int = 1) -> None:
        """The next ``times`` Bulk API 2.0 query jobs end ``Failed`` with ``message``."""
        self.control.api.bulk.fail(message, times)

    def set_locator_row_budget(self, rows: int) -> None:
        """How many result rows the open query locators may hold together (memory guard;
        past it the least recently used locator is dropped: INVALID_QUERY_LOCATOR)."""
        self.control.api.locator_row_budget = max(1, rows)

    def set_bulk_poll_steps(self, steps: int) -> None:
        """How many polls a Bulk API 2.0 query job answers InProgress before JobComplete."""
        self.control.api.bulk.poll_steps = max(0, steps)

    def fail_records(self, sobject: str = "*", *, times: int = 1, error_code: str = "UNABLE_TO_LOCK_ROW",
                     message: str | None = None) -> None:
        self.control.fail_records(sobject, times=times, error_code=error_code, message=message)

    def before(self, endpoint: str, fn: Callable[[], None], *, skip: int = 0) -> None:
        self.control.before(endpoint, fn, skip=skip)

    def expire_sessions(self) -> int:
        return self.control.expire_sessions()

    def set_limits(self, *, max: int | None = None, used: int | None = None) -> None:  # noqa: A002
        self.control.set_limits(max=max, used=used)

    def set_latency(self, seconds: float, endpoint: str = "*") -> None:
        self.control.set_latency(seconds, endpoint)

    def set_batch_size(self, size: int) -> None:
        self.control.set_batch_size(size)

    def insert(self, sobject: str, records: list[dict[str, Any]], *, stamp: str | None = None) -> list[str]:
        return self.control.insert(sobject, records, stamp=stamp)

    def update(self, sobject: str, records: list[dict[str, Any]], *, stamp: str | None = None) -> None:
        self.control.update(sobject, records, stamp=stamp)

    def delete(self, sobject: str, ids: list[str], *, stamp: str | None = None, purge: bool = False) -> None:
        self.control.delete(sobject, ids, stamp=stamp, purge=purge)

    def records(self, sobject: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        return self.control.records(sobject, include_deleted=include_deleted)

    def get(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        return self.control.get(sobject, record_id)

    # ------------------------------------------------------------ clock and GTM billing

    def clock(self) -> dict[str, Any]:
        return self.control.clock()

    def today(self) -> date:
        return self.data.clock.today()

    def advance_clock(self, *, days: float = 0, seconds: float = 0) -> dict[str, Any]:
        """Move the org's clock forward (``today`` too); it never goes back."""
        return self.control.advance_clock(days=days, seconds=seconds)

    @property
    def billing(self) -> GtmBilling:
        return self.control.billing

    def link_stripe(self, api_base: str, api_key: str, *, account: str | None = None) -> RunResult:
        """Play the GTM app's billing on this Stripe account (see ``billing.py``): from now
        on due orders are invoiced there; what is due already is invoiced at once."""
        return self.control.billing.link_stripe(api_base, api_key, account=account)

    def unlink_stripe(self) -> None:
        self.control.billing.unlink()

    def run_billing(self) -> RunResult:
        """Issue every invoice due now (e.g. after ``advance_clock``)."""
        return self.control.billing.run()

    def billing_fault(self, kind: str, *, order_id: str | None = None, times: int = 1,
                      amount: Decimal | str = "100.00", days: int = 1) -> None:
        """A billing knob: ``skip``, ``wrong_amount`` (+``amount`` on the first line),
        ``late`` (``days`` after the due moment), ``split`` or ``duplicate`` (two invoices
        for one order), for ``order_id`` or the next ``times`` orders that come due."""
        self.control.billing.add_fault(kind, order_id=order_id, times=times, amount=amount, days=days)

    def save(self, path: Path) -> None:
        """Write every record (deleted ones too) and the id counters to ``path``."""
        data = self.data
        with data.lock:
            tables = {name: {"counter": t.counter, "rows": list(t.rows.values())} for name, t in data.tables.items()}
        write_snapshot(path, "sandbox-org", {"org_id": self.org_id, "demo_ids": dict(self.demo_ids),
                                             "tables": tables, "billing": self.control.billing.state(),
                                             "clock_offset_s": data.clock.offset.total_seconds()})

    def restore(self, path: Path) -> None:
        """Replace this org's records with a snapshot written by ``save`` of an org with the
        same id and objects; ``SnapshotError`` (nothing changed) otherwise."""
        saved = read_snapshot(path, "sandbox-org")
        if saved.get("org_id") != self.org_id:
            raise SnapshotError(f"{path}: a snapshot of org {saved.get('org_id')}, not {self.org_id}")
        data = self.data
        unknown = sorted(set(saved["tables"]) - set(data.tables))
        if unknown:
            raise SnapshotError(f"{path}: objects this org does not have: {', '.join(unknown)}")
        with data.lock:
            for name, table in saved["tables"].items():
                data.tables[name].rows.clear()
                data.tables[name].bulk_load(table["rows"])
                data.tables[name].counter = int(table["counter"])
        self.control.demo_ids = dict(saved["demo_ids"])
        self.control.billing.load_state(saved.get("billing"))
        behind = float(saved.get("clock_offset_s", 0)) - data.clock.offset.total_seconds()
        if behind > 0:  # the saved org had advanced its clock further: catch up (never back)
            data.clock.advance(seconds=behind)


def _public_key_pem(pem: bytes) -> bytes:
    """The connected app's key from what the partner uploaded: an X.509 certificate (as in
    Salesforce's connected app settings) or a bare public key."""
    if b"BEGIN CERTIFICATE" in pem:
        cert = x509.load_pem_x509_certificate(pem)
        return cert.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem

