"""Events, webhook endpoints and signed webhook delivery.

Every event is POSTed as JSON to each enabled endpoint subscribed to its type (a connected
account's events also go to the platform's ``connect=true`` endpoints), signed as Stripe
signs: ``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
Delivery runs on a background thread; a non-2xx answer or a connection failure is retried
after each of ``settings.webhook_retry_delays`` seconds, then given up (Stripe retries for
up to three days in live mode; the schedule here is short so tests stay fast). Retries can
reorder events, as on Stripe.

Events are listed and retrieved for 30 days (by the sandbox clock), as Stripe keeps them;
an account has at most 16 webhook endpoints.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gtm_sandbox.stripe.api import Ctx, Router
from gtm_sandbox.stripe.event_types import EVENT_TYPES
from gtm_sandbox.stripe.listing import paginate, range_filter
from gtm_sandbox.stripe.wire import (
    Params,
    apply_metadata,
    bad_param,
    invalid,
    missing,
    new_id,
    new_secret,
    no_such,
    version_error,
)
from gtm_sandbox.stripe.world import DAY, Account, World, strip_private

# "List events, going back up to 30 days"; "Retrieves the details of an event if it was
# created in the last 30 days" (by the sandbox clock).
EVENT_RETENTION_S = 30 * DAY
# "You can register up to 16 webhook endpoints on each Stripe account."
MAX_WEBHOOK_ENDPOINTS = 16
# `types` of GET /v1/events: "An array of up to 20 strings containing specific event names."
MAX_EVENT_TYPES = 20


def sign(secret: str, payload: bytes, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event_in_version(event: dict[str, Any], version: str | None) -> dict[str, Any]:
    """The event as an endpoint pinned to ``version`` (None: the account's) receives it."""
    out = strip_private(event)
    drawn = event.get("_drawn", {})
    if version and version != event["api_version"] and version in drawn:
        out["api_version"] = version
        out["data"] = {**out["data"], "object": drawn[version]}
    return out


@dataclass
class Delivery:
    account_id: str
    event_id: str
    event_type: str
    endpoint_id: str
    payload: bytes
    attempt: int = 0


class WebhookDispatcher:
    """Background delivery with a retry schedule; ``wait_idle`` lets tests wait for it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, Delivery]] = []
        self._seq = itertools.count()
        self._in_flight = 0
        self._stopping = False
        self.log: list[dict[str, Any]] = []
        # Endpoints are local: never route deliveries through an environment proxy.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._thread = threading.Thread(target=self._run, name="stripe-sandbox-webhooks", daemon=True)
        self._thread.start()

    # -- publishing (called under the world lock) ---------------------------------------
    def endpoints_for(self, account: Account, event_type: str) -> list[tuple[Account, dict[str, Any]]]:
        targets: list[tuple[Account, dict[str, Any]]] = []
        owners = [(account, False)] + ([(self.world.platform, True)] if account.connected else [])
        for owner, via_connect in owners:
            for endpoint in owner.objects["webhook_endpoint"].values():
                if endpoint.get("_deleted") or endpoint["status"] != "enabled":
                    continue
                if bool(endpoint.get("_connect")) != via_connect:
                    continue
                if "*" in endpoint["enabled_events"] or event_type in endpoint["enabled_events"]:
                    targets.append((owner, endpoint))
        return targets

    def publish(self, world: World, account: Account, event: dict[str, Any],
                source: dict[str, Any] | None = None) -> None:
        """Queue ``event`` for its endpoints. ``source`` is the stored object the event is
        about, as it is now: an endpoint pinned to another API version gets ``data.object``
        drawn in that version ("Webhook events use the API version that's set during your
        webhook's endpoint creation"); the drawings are kept on the event so a resend
        delivers the same snapshot."""
        targets = self.endpoints_for(account, event["type"])
        # Counted before the payload is made: the body a receiver gets says how many
        # deliveries are outstanding, this one included, as Stripe's does.
        event["pending_webhooks"] += len(targets)
        drawn: dict[str, Any] = event.setdefault("_drawn", {})
        for _, endpoint in targets:
            version = endpoint["api_version"] or event["api_version"]
            if version != event["api_version"] and version not in drawn and source is not None:
                drawn[version] = world.render(account, source, version)
        for owner, endpoint in targets:
            payload = json.dumps(event_in_version(event, endpoint["api_version"]), indent=2).encode()
            self._schedule(Delivery(owner.id, event["id"], event["type"], endpoint["id"], payload), 0.0)

    def _schedule(self, delivery: Delivery, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), delivery))
            self._cond.notify_all()

    # -- the delivery thread -------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._queue or self._queue[0][0] > time.monotonic()):
                    timeout = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                _, _, delivery = heapq.heappop(self._queue)
                self._in_flight += 1
            try:
                self._attempt(delivery)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()

    def _attempt(self, delivery: Delivery) -> None:
        with self.world.lock:
            owner = self.world.accounts[delivery.account_id]
            endpoint = owner.objects["webhook_endpoint"].get(delivery.endpoint_id)
            if endpoint is None or endpoint.get("_deleted") or endpoint["status"] != "enabled":
                return
            url, secret = endpoint["url"], endpoint["_secret"]
        delivery.attempt += 1
        status: int | None = None
        error: str | None = None
        try:  # a URL urllib cannot use is a failed attempt, never the end of the delivery thread
            request = urllib.request.Request(
                url,
                data=delivery.payload,
                method="POST",
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                    "Stripe-Signature": sign(secret, delivery.payload, int(time.time())),
                },
            )
            with self._opener.open(request, timeout=self.world.settings.webhook_timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 300
        self.log.append({"event_id": delivery.event_id, "event_type": delivery.event_type,
                         "endpoint_id": delivery.endpoint_id, "url": url, "attempt": delivery.attempt,
                         "status": status, "error": error, "at": time.time()})
        if ok:
            self._settled(delivery)
            return
        delays = self.world.settings.webhook_retry_delays
        if delivery.attempt <= len(delays):
            self._schedule(delivery, delays[delivery.attempt - 1])
        else:
            self._settled(delivery)

    def _settled(self, delivery: Delivery) -> None:
        with self.world.lock:
            for account in self.world.accounts.values():
                event = account.objects["event"].get(delivery.event_id)
                if event is not None:
                    event["pending_webhooks"] = max(0, event["pending_webhooks"] - 1)

    # -- control ---------------------------------------------------------------------------
    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no delivery is queued (including retries) or under way."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=5)


# ---------------------------------------------------------------------------------------
# Endpoints of the API
# ---------------------------------------------------------------------------------------


def _enabled_events(p: Params) -> list[str]:
    events = [str(e) for e in (p.list("enabled_events") or [])]
    if not events:
        raise missing("enabled_events")
    for index, name in enumerate(events):
        if name != "*" and name not in EVENT_TYPES:
            raise bad_param(f"Invalid enabled_events[{index}]: {name!r} is not a Stripe event type (or '*').",
                            param=f"enabled_events[{index}]", code=None)
    return events


def _get_endpoint(ctx: Ctx, endpoint_id: str) -> dict[str, Any]:
    found = ctx.account.get(endpoint_id)
    if found is None or found["object"] != "webhook_endpoint" or found.get("_deleted"):
        raise no_such("webhook endpoint", endpoint_id)
    return found


def _endpoint_url(p: Params) -> str:
    """``url``, checked on create and on update alike (``url_invalid``)."""
    url = p.req_str("url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_param(f"Invalid URL: {url}. URLs must begin with http:// or https:// and name a host.",
                        param="url", code="url_invalid")
    return url


def create_endpoint(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("url", "enabled_events", "api_version", "connect", "description", "metadata", "expand")
    url = _endpoint_url(p)
    version = p.str("api_version")
    if version is not None and (refused := version_error(version, param="api_version")) is not None:
        raise refused
    events = _enabled_events(p)
    if sum(1 for e in ctx.account.objects["webhook_endpoint"].values() if not e.get("_deleted")) \
            >= MAX_WEBHOOK_ENDPOINTS:
        raise invalid(f"You have reached the maximum of {MAX_WEBHOOK_ENDPOINTS} webhook endpoints on this account. "
                      "Delete an endpoint to add another.")
    endpoint = ctx.account.add({
        "id": new_id("we"), "object": "webhook_endpoint", "api_version": version, "application": None,
        "created": ctx.now(), "description": p.str("description"), "enabled_events": events,
        "livemode": False, "metadata": apply_metadata({}, p.raw("metadata")), "status": "enabled", "url": url,
        "_secret": new_secret("whsec"), "_connect": bool(p.bool("connect", False)),
    })
    out = ctx.render(endpoint)
    out["secret"] = endpoint["_secret"]  # only the create call reveals the signing secret
    return out


def update_endpoint(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("url", "enabled_events", "description", "disabled", "metadata", "expand")
    endpoint = _get_endpoint(ctx, id)
    # Checked before anything changes: a refused update leaves the endpoint as it was.
    url = _endpoint_url(p) if p.has("url") else endpoint["url"]
    events = _enabled_events(p) if p.has("enabled_events") else endpoint["enabled_events"]
    description = (p.str("description") or None) if p.has("description") else endpoint["description"]
    disabled = p.bool("disabled", endpoint["status"] == "disabled")
    metadata = apply_metadata(endpoint["metadata"], p.raw("metadata"))
    endpoint.update(url=url, enabled_events=events, description=description, metadata=metadata,
                    status="disabled" if disabled else "enabled")
    return ctx.render(endpoint)


def delete_endpoint(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    endpoint = _get_endpoint(ctx, id)
    endpoint["_deleted"] = True
    return {"id": id, "object": "webhook_endpoint", "deleted": True}


def retrieve_endpoint(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("expand")
    return ctx.render(_get_endpoint(ctx, id))


def list_endpoints(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("limit", "starting_after", "ending_before", "expand")
    items = [e for e in ctx.account.all("webhook_endpoint") if not e.get("_deleted")]
    return paginate(ctx.world, ctx.account, p, items, url="/v1/webhook_endpoints", version=ctx.version)


def _type_matches(pattern: str, event_type: str) -> bool:
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def list_events(ctx: Ctx, p: Params) -> dict[str, Any]:
    p.only("created", "delivery_success", "ending_before", "expand", "limit", "starting_after", "type", "types")
    kind = p.str("type")
    kinds = [str(k) for k in (p.list("types") or [])]
    if kind and kinds:
        raise bad_param("You may only specify one of these parameters: type, types.", param="types", code=None)
    if len(kinds) > MAX_EVENT_TYPES:
        raise bad_param(f"You may pass at most {MAX_EVENT_TYPES} event types.", param="types", code=None)
    success = p.bool("delivery_success")
    created = range_filter(p, "created")
    kept_since = ctx.now() - EVENT_RETENTION_S
    items = [
        e for e in ctx.account.all("event")
        if e["created"] >= kept_since
        and (kind is None or _type_matches(kind, e["type"]))
        and (not kinds or any(_type_matches(k, e["type"]) for k in kinds))
        and (success is None or (e["pending_webhooks"] == 0) == success)
        and (created is None or created(e))
    ]
    return paginate(ctx.world, ctx.account, p, items, url="/v1/events", version=ctx.version)


def retrieve_event(ctx: Ctx, p: Params, id: str) -> dict[str, Any]:
    p.only("expand")
    found = ctx.account.get(id)
    if found is None or found["object"] != "event" or found["created"] < ctx.now() - EVENT_RETENTION_S:
        raise no_such("event", id)
    return strip_private(found)


def install(world: World, router: Router) -> None:
    r = router.add
    r("POST", "/v1/webhook_endpoints")(create_endpoint)
    r("GET", "/v1/webhook_endpoints")(list_endpoints)
    r("GET", "/v1/webhook_endpoints/{id}")(retrieve_endpoint)
    r("POST", "/v1/webhook_endpoints/{id}")(update_endpoint)
    r("DELETE", "/v1/webhook_endpoints/{id}")(delete_endpoint)
    r("GET", "/v1/events")(list_events)
    r("GET", "/v1/events/{id}")(retrieve_event)
