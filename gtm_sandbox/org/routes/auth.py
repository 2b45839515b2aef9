"""``/services/oauth2/token``: the OAuth grants of the connected app (see ``org/auth.py``)."""

from __future__ import annotations

from urllib.parse import parse_qs

from gtm_sandbox.org.auth import OAuthError, grant, token_response
from gtm_sandbox.org.messages import Request, Response


class AuthRoutes:
    """Handlers mixed into ``OrgApi`` (``self`` is the API: data, sessions, controls)."""

    def _token(self, req: Request) -> Response:
        if req.method != "POST":
            return Response.json(405, {"error": "invalid_request", "error_description": "must use HTTP POST"})
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        for k, v in req.query.items():  # some clients send the grant as query parameters
            form.setdefault(k, v[0])
        try:
            grant(self.app, form, req.headers)
        except OAuthError as err:
            return Response.json(err.status, err.body())
        return Response.json(200, token_response(self.app, self.sessions, self.login_url, self.instance_url))
