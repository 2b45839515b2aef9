"""``/services/data/`` (the API versions) and ``/services/data/vNN.N/`` (its resources)."""

from __future__ import annotations

import re

from gtm_sandbox.org.data import ApiError
from gtm_sandbox.org.messages import Request, Response
from gtm_sandbox.org.routing import ANY, RouteTable

# A path under the REST API: /services/data/vNN.N[/resource…]
DATA_PATH = re.compile(r"^/services/data/v(\d+\.\d)(?:/(.*))?$")
SUPPORTED_VERSIONS = [f"{v}.0" for v in range(40, 68)]  # up to Summer '26 (v67.0)


class VersionsRoutes:
    """Handlers mixed into ``OrgApi`` (``self`` is the API: data, sessions, controls)."""

    def _versions(self, req: Request) -> Response:
        return Response.json(
            200,
            [{"label": release_name(v), "url": f"/services/data/v{v}", "version": v} for v in SUPPORTED_VERSIONS],
        )

    def _resources(self, req: Request, v: str) -> Response:
        names = ["query", "queryAll", "sobjects", "limits", "composite", "search", "parameterizedSearch"]
        return Response.json(200, {n: f"/services/data/v{v}/{n}" for n in names})


def install(routes: RouteTable) -> None:
    routes.add(ANY, "", "resources", VersionsRoutes._resources)


def release_name(version: str) -> str:
    """The release that introduced an API version, as /services/data/ labels it: three
    releases a year (Spring, Summer, Winter of the next year), v60.0 being Spring '24."""
    i = int(float(version)) - 60
    season = ("Spring", "Summer", "Winter")[i % 3]
    year = 24 + i // 3 + (1 if season == "Winter" else 0)
    return f"{season} '{year:02d}"


def available_since(version: str, since: float) -> None:
    """Resources newer than the request's API version don't exist there."""
    if float(version) < since:
        raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
