"""Request context and routing shared by the resource modules.

Each resource module exposes ``routes(router)`` registering its handlers on templates such
as ``/v1/invoices/{id}/finalize``; the template is also the name of the endpoint in the
call counters and fault injection (``POST /v1/invoices/{id}/finalize``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gtm_sandbox.stripe.wire import Params
from gtm_sandbox.stripe.world import Account, World


@dataclass
class Ctx:
    """What a handler knows about the request it serves."""

    world: World
    account: Account
    request_id: str | None
    idempotency_key: str | None
    version: str

    def now(self) -> int:
        return self.world.now()

    def render(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.world.render(self.account, obj, self.version)

    def emit(self, event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.world.emit(
            self.account,
            event_type,
            obj,
            previous_attributes=previous,
            request={"id": self.request_id, "idempotency_key": self.idempotency_key},
        )


Handler = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler
    pattern: re.Pattern[str]

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.template}"


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str) -> Callable[[Handler], Handler]:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"

        def register(handler: Handler) -> Handler:
            self.routes.append(Route(method, template, handler, re.compile(regex)))
            return handler

        return register

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        # Literal segments win over placeholders (`/v1/invoices/search` before `{id}`).
        candidates = [r for r in self.routes if r.method == method]
        candidates.sort(key=lambda r: r.template.count("{"))
        for route in candidates:
            found = route.pattern.match(path)
            if found:
                return route, found.groupdict()
        return None


def call(route: Route, ctx: Ctx, params: Params, path_params: dict[str, str]) -> dict[str, Any]:
    return route.handler(ctx, params, **path_params)
