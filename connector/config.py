"""Per-org configuration: one TOML file per partner org, validated with pydantic.

Unknown keys are rejected. Secrets are never written in the file itself: a secret key
takes ``{ env = "NAME" }`` or ``{ file = "path" }`` and is read into a ``SecretStr`` at
load time (a relative file path is relative to the config file). ``load_config`` raises
``ConfigError`` whose ``problems`` name the file and the dotted key of every problem:
``config/acme.toml: salesforce.auth.client_id: field required``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from connector.errors import ConfigError

if TYPE_CHECKING:
    from connector.mappings import MappingSet

# Bounded reads: an org file is a few KB, a secret a few hundred bytes; a 10 MB (or endless)
# file is refused with one line rather than read whole.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_SECRET_BYTES = 64 * 1024
JOBS = ("mirror", "offers_push", "invoicing", "invoice_status", "reconcile", "writeback")
DEFAULT_INTERVALS_S = {
    "mirror": 300,
    "offers_push": 300,
    "invoicing": 900,
    "invoice_status": 900,
    "reconcile": 3600,
    "writeback": 900,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve_secret(value: Any, info: ValidationInfo) -> Any:
    """``{env = NAME}`` / ``{file = PATH}`` -> SecretStr. Literal strings are refused so that
    a secret can't be committed in a config file by accident."""
    if isinstance(value, SecretStr):
        return value
    ctx = info.context or {}
    if isinstance(value, str):
        raise ValueError('secrets are not written in the file: use { env = "NAME" } or { file = "PATH" }')
    if not isinstance(value, dict) or set(value) - {"env", "file"} or len(value) != 1:
        raise ValueError('expected exactly one of { env = "NAME" } or { file = "PATH" }')
    if ctx.get("skip_secrets"):
        return SecretStr("")
    if "env" in value:
        name = str(value["env"])
        env = ctx.get("environ", os.environ)
        # Stripped like a file secret: a stray newline (``export X="$(cat key)"``, a
        # Kubernetes secret) would otherwise break the HTTP header the secret goes into.
        secret = (env.get(name) or "").strip()
        if not secret:
            raise ValueError(f"environment variable {name} is not set")
        return SecretStr(secret)
    path = Path(str(value["file"])).expanduser()
    if not path.is_absolute():
        path = Path(ctx.get("base_dir", ".")) / path
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise ValueError(f"secret file {path} is larger than {MAX_SECRET_BYTES // 1024} KiB")
    try:
        return SecretStr(raw.decode("utf-8").strip())
    except UnicodeDecodeError:
        raise ValueError(f"secret file {path} is not UTF-8 text") from None


Secret = Annotated[SecretStr, BeforeValidator(_resolve_secret)]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(lambda v, i: None if v is None else _resolve_secret(v, i))]


def _relative_path(value: Any, info: ValidationInfo) -> Any:
    if value is None or value == "":
        return None
    path = Path(str(value)).expanduser()
    if not path.is_absolute():
        path = Path((info.context or {}).get("base_dir", ".")) / path
    return path


ConfigPath = Annotated[Path | None, BeforeValidator(_relative_path)]


def _check_port(url: str) -> None:
    """The HTTP clients parse the port when they first connect; a bad one is the key's error now."""
    from urllib.parse import urlsplit

    try:
        _ = urlsplit(url).port  # reading it parses it: a bad port raises here
    except ValueError:
        raise ValueError(f"the port of {url!r} must be a number from 1 to 65535") from None


class OrgSection(_Strict):
    alias: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", description="short name used in logs, files and locks")
    org_id: str = Field(description="the 18-character Salesforce org id of the PBO")

    @field_validator("org_id")
    @classmethod
    def _org_id(cls, v: str) -> str:
        if not re.fullmatch(r"00D[A-Za-z0-9]{15}", v):
            raise ValueError("must be an 18-character Salesforce org id starting with 00D")
        return v


class JwtBearer(_Strict):
    kind: Literal["jwt_bearer"]
    client_id: str
    username: str
    private_key_file: ConfigPath

    @field_validator("private_key_file")
    @classmethod
    def _key_exists(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is None:
            raise ValueError("field required")
        if not (info.context or {}).get("skip_secrets"):
            if not v.is_file():
                raise ValueError(f"private key file {v} {'is not a file' if v.exists() else 'does not exist'}")
            _check_private_key(v)
        return v


def _check_private_key(path: Path) -> None:
    """Fail at load time, naming the file, if the JWT key can't sign: unreadable, not PEM,
    encrypted, or not RSA (RS256). Never quotes the file's content."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read private key file {path}: {exc.strerror}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError(f"private key file {path} is encrypted; the JWT bearer flow needs it unencrypted") from None
    except Exception:  # ValueError, UnsupportedAlgorithm: what the file holds is not the point
        raise ValueError(f"private key file {path} is not a PEM private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"private key file {path} is not an RSA key (the JWT bearer flow signs with RS256)")


class ClientCredentials(_Strict):
    kind: Literal["client_credentials"]
    client_id: str
    client_secret: Secret


class Password(_Strict):
    """Username-password OAuth flow: for sandboxes only (production orgs refuse it)."""

    kind: Literal["password"]
    client_id: str
    client_secret: OptionalSecret = None
    username: str
    password: Secret


Auth = Annotated[JwtBearer | ClientCredentials | Password, Field(discriminator="kind")]


class SalesforceSection(_Strict):
    login_url: str = "https://login.salesforce.com"
    api_version: str = Field(default="66.0", pattern=r"^\d{2}\.0$")
    auth: Auth
    ca_bundle: ConfigPath = None
    timeout_seconds: float = Field(default=60.0, gt=0)

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle(cls, v: Path | None) -> Path | None:
        # The TLS context the Salesforce session will verify with, built now: a missing or
        # unreadable bundle is this key's error, not an OSError in the middle of a run.
        import ssl

        if v is None:
            return v
        if not v.exists():
            raise ValueError(f"CA bundle {v} does not exist")
        try:
            if v.is_dir():
                ssl.create_default_context(capath=str(v))
            else:
                ssl.create_default_context(cafile=str(v))
        except ssl.SSLError:
            raise ValueError(f"CA bundle {v} holds no PEM certificate") from None
        except OSError as exc:
            raise ValueError(f"cannot read CA bundle {v}: {exc.strerror}") from None
        return v

    @field_validator("login_url")
    @classmethod
    def _https(cls, v: str) -> str:
        if not v.startswith("https://"):
            raise ValueError("must be an https:// URL")
        _check_port(v)
        return v.rstrip("/")

    @model_validator(mode="after")
    def _password_only_for_sandboxes(self) -> SalesforceSection:
        host = self.login_url.split("//", 1)[1].split("/", 1)[0].split(":", 1)[0]
        is_sandbox = host in ("test.salesforce.com", "127.0.0.1", "localhost") or ".sandbox." in host
        if self.auth.kind == "password" and not is_sandbox:
            raise ValueError("auth kind 'password' is only allowed for sandboxes (test.salesforce.com, "
                             "*.sandbox.my.salesforce.com or a local sandbox org)")
        return self


class StripeSection(_Strict):
    api_key: Secret
    api_base: str | None = Field(default=None, description="only for a local Stripe server; unset in production")
    account: str | None = Field(default=None, pattern=r"^acct_[A-Za-z0-9]+$", description="connected account id")
    webhook_secret: OptionalSecret = None
    timeout_seconds: float = Field(default=60.0, gt=0)

    @field_validator("api_base")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://", v):
            raise ValueError("must be an http(s):// URL")
        if v is not None:
            _check_port(v)
        return v.rstrip("/") if v else v


class Schedule(_Strict):
    enabled: bool = True
    interval_seconds: int | None = Field(default=None, ge=10)
    cron: str | None = None
    jitter_seconds: int = Field(default=10, ge=0)

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        # The daemon's own trigger builder: what passes here is what the daemon can run.
        from connector.cron import check_crontab

        if v is not None:
            try:
                check_crontab(v)
            except ValueError as exc:
                raise ValueError(f"invalid cron {v!r}: {exc}") from None
        return v

    @model_validator(mode="after")
    def _one_trigger(self) -> Schedule:
        if self.interval_seconds is not None and self.cron is not None:
            raise ValueError("give interval_seconds or cron, not both")
        return self


class Schedules(_Strict):
    mirror: Schedule = Schedule()
    offers_push: Schedule = Schedule()
    invoicing: Schedule = Schedule()
    invoice_status: Schedule = Schedule()
    reconcile: Schedule = Schedule()
    writeback: Schedule = Schedule()

    def trigger(self, job: str) -> Schedule:
        return getattr(self, job)

    def interval_seconds(self, job: str) -> int:
        return self.trigger(job).interval_seconds or DEFAULT_INTERVALS_S[job]


ISSUER_HELP = ("required: `salesforce` when your GTM app already invoices through Stripe (the usual case), "
               "`connector` when this connector must create the invoices")


class InvoicingSection(_Strict):
    # Who issues the Stripe invoice of an accepted order. No default: guessing wrong either
    # bills the customer twice (connector on a GTM-billed org) or never (salesforce on an
    # org the GTM app does not bill).
    issuer: Literal["salesforce", "connector"]
    missing_after_days: int = Field(default=2, ge=0, le=60)
    lead_days: int = Field(default=1, ge=0, le=60)
    days_until_due: int = Field(default=30, ge=1, le=365)
    proration: Literal["daily", "monthly"] = "daily"
    poll_after_minutes: int = Field(default=60, ge=1)
    max_order_total: Decimal = Field(default=Decimal("1000000.00"), gt=0,
                                     description="an order planned above this USD total is quarantined")
    max_quantity: int = Field(default=100_000, ge=1, description="an order line above this quantity is quarantined")


class SyncSection(_Strict):
    lookback_seconds: int = Field(default=300, ge=0, le=86_400)
    page_size: int = Field(default=2000, ge=200, le=2000)
    objects: list[str] | None = Field(default=None, description="mapping object keys to mirror; default all")
    describe_recheck_minutes: int = Field(default=60, ge=0, le=10_080,
                                          description="re-check the mapping against the org's describe this often")
    bulk_threshold: int = Field(default=50_000, ge=0,
                                description="read an object through a Bulk API 2.0 query job when its query "
                                            "matches at least this many records; 0: always REST")


class PayoutsSection(_Strict):
    tolerance: Decimal = Field(default=Decimal("0.00"), ge=0, description="difference in USD tolerated before flagging")
    missing_after_days: int = Field(default=7, ge=1)


class WritebackSection(_Strict):
    enabled: bool = True
    sobject: str | None = Field(default=None, description="override the mapping's write-back object")
    external_id: str | None = None


class OffersSection(_Strict):
    drafts_dir: ConfigPath = None


# What [alerts] can send (``connector.alerts`` evaluates them); ``events`` picks among them.
AlertEvent = Literal["job_failed", "api_budget_stop", "discrepancy", "invoice_missing", "dead_letters",
                     "daemon_started", "daemon_stopped"]
ALERT_EVENTS: tuple[AlertEvent, ...] = get_args(AlertEvent)
# Hosts whose webhook URLs are themselves the credential (a token in the path).
_TOKEN_URL_HOSTS = ("hooks.slack.com", "discord.com", "discordapp.com", "webhook.office.com", "chat.googleapis.com")
_TOKEN_IN_FILE = ('carries a token: do not write it in the file; use { env = "NAME" }, { file = "PATH" } '
                  "or webhook_url_env")


def _webhook_url(value: Any, info: ValidationInfo) -> Any:
    """The alert receiver's URL as a ``SecretStr`` (never logged nor stored). A URL without
    credentials may be written in the file; one that carries a token (user:password@, a query
    string, a Slack/Teams/Discord hook) must come from the environment or a file."""
    from urllib.parse import urlsplit

    if isinstance(value, str):
        parts = urlsplit(value.strip())
        host = (parts.hostname or "").lower()
        if parts.username or parts.password or parts.query or any(
                host == h or host.endswith("." + h) for h in _TOKEN_URL_HOSTS):
            raise ValueError(_TOKEN_IN_FILE)
        secret = SecretStr(value.strip())
    else:
        secret = _resolve_secret(value, info)
    url = secret.get_secret_value()
    if not url and (info.context or {}).get("skip_secrets"):
        return secret
    # Never quote the URL: it may be the credential.
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError("must be an http:// or https:// URL")
    try:
        _ = urlsplit(url).port  # reading it parses it: a bad port raises here
    except ValueError:
        raise ValueError("the URL's port must be a number from 1 to 65535") from None
    return secret


WebhookUrl = Annotated[SecretStr, BeforeValidator(_webhook_url)]


class AlertsSection(_Strict):
    """Optional: events sent to a webhook, each once (``connector.alerts``)."""

    webhook_url: WebhookUrl = Field(repr=False)
    webhook_url_env: str | None = Field(default=None, description="read the webhook URL from this env var")
    format: Literal["json", "slack"] = "json"
    events: tuple[AlertEvent, ...] = ALERT_EVENTS
    failures_in_a_row: int = Field(default=3, ge=1, le=100)
    dead_letters_above: int = Field(default=10, ge=0)
    timeout_seconds: float = Field(default=5.0, gt=0, le=30)

    @model_validator(mode="before")
    @classmethod
    def _url_from_env(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("webhook_url_env") is not None:
            if "webhook_url" in data:
                raise ValueError("give webhook_url or webhook_url_env, not both")
            data = {**data, "webhook_url": {"env": str(data["webhook_url_env"])}}
        return data

    def sends(self, event: str) -> bool:
        return event in self.events


class DaemonSection(_Strict):
    bind: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    shutdown_grace_seconds: int = Field(default=30, ge=1)
    misfire_grace_seconds: int = Field(default=60, ge=1)
    # The dashboard at / needs this secret (bearer token, or as a basic-auth password) when
    # the daemon listens beyond loopback; the variable names the secret, never holds it here.
    dashboard_token_env: str | None = None
    # Times on the dashboard are shown in this IANA zone (UTC on hover); default: the machine's.
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin, America/New_York)") from None
        return value


# The backends make_engine supports (a driver may be named: postgresql+psycopg://).
_DATABASE_URL = re.compile(r"^(sqlite|postgres|postgresql)(\+\w+)?://", re.IGNORECASE)


def _database_url_problem(url: str) -> str | None:
    """Why the engine could not be built from ``url`` (the runtime's own check), or None."""
    from connector.adapters.store.engine import check_database_url

    try:
        check_database_url(url)
    except ValueError as exc:
        return str(exc).removeprefix("database URL: ")
    return None


class OrgConfig(_Strict):
    """One partner org. Build with ``load_config(path)``."""

    org: OrgSection
    salesforce: SalesforceSection
    stripe: StripeSection
    data_dir: ConfigPath = None
    database_url: str | None = Field(default=None, repr=False)  # may hold a password
    database_url_env: str | None = Field(default=None, description="read the database URL from this env var")
    mapping: str = "gtm-v2"
    api_budget_percent: int = Field(default=80, ge=1, le=100)
    schedules: Schedules = Schedules()
    invoicing: InvoicingSection
    sync: SyncSection = SyncSection()
    payouts: PayoutsSection = PayoutsSection()
    writeback: WritebackSection = WritebackSection()
    offers: OffersSection = OffersSection()
    daemon: DaemonSection = DaemonSection()
    alerts: AlertsSection | None = None
    source_file: Path | None = Field(default=None, exclude=True)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        if v and not _DATABASE_URL.match(v):
            raise ValueError(f"must be sqlite:///FILE or postgresql://USER@HOST/DB, got {redact_url(v)!r}")
        if v and (problem := _database_url_problem(v)):
            raise ValueError(f"{problem}, got {redact_url(v)!r}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_context(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        ctx = info.context or {}
        data = dict(data)
        if data.get("database_url") and data.get("database_url_env"):
            raise ValueError("give database_url or database_url_env, not both")
        env_name = data.get("database_url_env")
        if env_name and not ctx.get("skip_secrets"):
            url = ctx.get("environ", os.environ).get(env_name)
            if not url:
                raise ValueError(f"database_url_env: environment variable {env_name} is not set")
            if not _DATABASE_URL.match(url):
                raise ValueError(f"database_url_env: {env_name} must hold sqlite:///FILE or "
                                 f"postgresql://USER@HOST/DB, got {redact_url(url)!r}")
            if problem := _database_url_problem(url):
                raise ValueError(f"database_url_env: {env_name}: {problem}, got {redact_url(url)!r}")
            data["database_url"] = url
        return data

    @model_validator(mode="after")
    def _derive(self) -> OrgConfig:
        base = Path(".")
        data_dir = self.data_dir or base / "data"
        object.__setattr__(self, "data_dir", data_dir)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{data_dir / (self.org.alias + '.sqlite3')}")
        if self.offers.drafts_dir is None:
            object.__setattr__(self.offers, "drafts_dir", base / "offers" / self.org.alias)
        return self

    @property
    def alias(self) -> str:
        return self.org.alias

    @property
    def org_id(self) -> str:
        return self.org.org_id

    @property
    def poll_after(self) -> timedelta:
        return timedelta(minutes=self.invoicing.poll_after_minutes)


def _dotted(loc: tuple[Any, ...]) -> str:
    # pydantic puts the discriminator tag into the location (salesforce.auth.password.x);
    # operators think in file keys, so drop tags that are not keys of the file.
    tags = ("jwt_bearer", "client_credentials", "password")
    parts = [str(p) for i, p in enumerate(loc) if not (i > 0 and loc[i - 1] == "auth" and p in tags)]
    return ".".join(parts) or "(top level)"


def _issuer_key(key: str, err: Mapping[str, Any]) -> str:
    """A missing [invoicing] table is reported as its one required key."""
    return "invoicing.issuer" if err["type"] == "missing" and key == "invoicing" else key


# What a pattern-checked key must look like, in words (never the raw regex).
_PATTERN_WORDS = {
    r"^[a-z0-9][a-z0-9_-]{0,39}$": "must be 1-40 lowercase letters, digits, '-' or '_', starting with a letter "
                                   "or digit (e.g. acme-prod)",
    r"^\d{2}\.0$": "must be a Salesforce API version like 62.0",
    r"^acct_[A-Za-z0-9]+$": "must be a Stripe account id like acct_1A2b3C",
}


def _quoted_list(values: Any) -> str:
    return ", ".join(str(v).strip("'") for v in values)


def _message(err: Mapping[str, Any]) -> str:
    """One pydantic error in the operator's words: no library phrasing, no regex, and never
    the value itself (a secret pasted into the wrong key must not be printed)."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing" and tuple(err["loc"]) in (("invoicing",), ("invoicing", "issuer")):
        return ISSUER_HELP
    if kind == "missing":
        return "field required"
    if kind == "extra_forbidden":
        return "unknown key (not allowed here)"
    if kind == "string_pattern_mismatch":
        return _PATTERN_WORDS.get(str(ctx.get("pattern")), "has the wrong form")
    if kind == "literal_error" and "expected" in ctx:
        return f"must be one of: {_quoted_list(str(ctx['expected']).replace(' or ', ', ').split(', '))}"
    if kind == "union_tag_invalid":
        return (f"{ctx.get('discriminator', 'kind').strip(chr(39))} {ctx.get('tag')!r} is not known; use one of: "
                f"{_quoted_list(str(ctx.get('expected_tags', '')).split(', '))}")
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number"
    if kind in ("float_parsing", "float_type", "decimal_parsing"):
        return "must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    if kind in ("string_type",):
        return "must be a text string"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def parse_config(
    data: dict[str, Any],
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    skip_secrets: bool = False,
    environ: dict[str, str] | None = None,
) -> OrgConfig:
    """Validate an already-parsed TOML document. Raises ConfigError listing every problem."""
    context = {"base_dir": base_dir or Path("."), "skip_secrets": skip_secrets, "environ": environ or os.environ}
    try:
        config = OrgConfig.model_validate(data, context=context)
    except ValidationError as exc:
        problems = [(source, _issuer_key(_dotted(e["loc"]), e), _message(e)) for e in exc.errors()]
        raise ConfigError(format_problems(problems), problems) from None
    object.__setattr__(config, "source_file", Path(source) if source != "<config>" else None)
    return config


def load_config(path: str | Path, *, skip_secrets: bool = False, environ: dict[str, str] | None = None) -> OrgConfig:
    """Read and validate one org's TOML file."""
    path = Path(path)
    try:
        with path.open("rb") as handle:  # bounded: a huge or endless file is refused, not read whole
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        problem = (str(path), "(file)", f"cannot read: {exc.strerror}")
        raise ConfigError(format_problems([problem]), [problem]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        problem = (str(path), "(file)", f"larger than {MAX_CONFIG_BYTES // 1024} KiB: not an org config file")
        raise ConfigError(format_problems([problem]), [problem])
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        problem = (str(path), "(syntax)", f"not valid TOML: {exc}")
        raise ConfigError(format_problems([problem]), [problem]) from None
    return parse_config(data, source=str(path), base_dir=path.parent, skip_secrets=skip_secrets, environ=environ)


def load_config_dir(directory: str | Path, **kwargs: Any) -> tuple[list[OrgConfig], list[ConfigError]]:
    """Every ``*.toml`` in a directory except ``example.toml``: the valid configs and the
    errors of the others (the daemon runs the valid ones and reports the rest)."""
    configs: list[OrgConfig] = []
    errors: list[ConfigError] = []
    for path in sorted(Path(directory).glob("*.toml")):
        if path.name == "example.toml":
            continue
        try:
            configs.append(load_config(path, **kwargs))
        except ConfigError as exc:
            errors.append(exc)
    aliases = [c.alias for c in configs]
    for alias in {a for a in aliases if aliases.count(a) > 1}:
        problem = (str(directory), "org.alias", f"alias {alias!r} is used by more than one file")
        errors.append(ConfigError(format_problems([problem]), [problem]))
    return configs, errors


def format_problems(problems: list[tuple[str, str, str]]) -> str:
    return "\n".join(f"{file}: {key}: {msg}" for file, key, msg in problems)


def check_against_mapping(config: OrgConfig, mapping: MappingSet) -> None:
    """What the file names from the mapping exists in it: ``ConfigError`` naming the key.
    ``config check`` and ``bootstrap`` both call it, so a command never finds out later."""
    source = str(config.source_file or config.alias)
    problems = []
    unknown = mapping.unknown_objects(config.sync.objects or [])
    if unknown:
        problems.append((source, "sync.objects", f"unknown object(s) {', '.join(unknown)}; the mapping {mapping.name} "
                                                 f"has {mapping.describe_objects()} (or their sObject names)"))
    external_id = config.writeback.external_id
    if external_id is not None and external_id not in mapping.writeback.fields.values():
        problems.append((source, "writeback.external_id",
                         f"{external_id!r} is not a write-back field of mapping {mapping.name}"))
    if problems:
        raise ConfigError(problems[0][2], problems)


def redact_url(url: str) -> str:
    """A database URL fit for messages and tables: its password shown as ``***``, wherever
    it is (an unescaped ``@`` or ``/`` in it, or a ``password=`` parameter)."""
    from connector.logging import blank_url_passwords

    return blank_url_passwords(url, "***")
