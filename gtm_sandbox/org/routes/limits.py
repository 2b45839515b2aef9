"""``limits``: the daily API request allowance and Bulk API 2.0 query jobs."""

from __future__ import annotations

from gtm_sandbox.org.messages import Request, Response
from gtm_sandbox.org.routing import RouteTable

DAILY_BULK_QUERY_JOBS = 10000  # Bulk API 2.0 query jobs a day


class LimitsRoutes:
    """Handlers mixed into ``OrgApi`` (``self`` is the API: data, sessions, controls)."""

    def _limits(self, req: Request, v: str) -> Response:
        c = self.controls
        return Response.json(200, {
            "DailyApiRequests": {"Max": c.api_max, "Remaining": max(0, c.api_max - c.api_used)},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DailyBulkV2QueryJobs": {"Max": DAILY_BULK_QUERY_JOBS,
                                     "Remaining": max(0, DAILY_BULK_QUERY_JOBS - self.bulk.created)},
            "DataStorageMB": {"Max": 1024, "Remaining": 1000},
            "SingleEmail": {"Max": 5000, "Remaining": 5000},
        })


def install(routes: RouteTable) -> None:
    routes.add("GET", "limits", "limits", LimitsRoutes._limits)
