"""``/services/oauth2/token``: the OAuth grants of the connected app, and
``/services/oauth2/revoke`` (see ``org/auth.py``)."""

from __future__ import annotations

from urllib.parse import parse_qs

from gtm_sandbox.org.auth import REFRESH_GRANT, OAuthError, grant, token_response
from gtm_sandbox.org.messages import Request, Response


def _form(req: Request) -> dict[str, str]:
    form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    for k, v in req.query.items():  # some clients send the grant as query parameters
        form.setdefault(k, v[0])
    return form


class AuthRoutes:
    """Handlers mixed into ``OrgApi`` (``self`` is the API: data, sessions, controls)."""

    def _token(self, req: Request) -> Response:
        if req.method != "POST":
            return Response.json(405, {"error": "invalid_request", "error_description": "must use HTTP POST"})
        form = _form(req)
        try:
            grant(self.app, form, req.headers, self.sessions)
        except OAuthError as err:
            return Response.json(err.status, err.body())
        refresh = form.get("refresh_token") if form.get("grant_type") == REFRESH_GRANT else None
        return Response.json(200, token_response(self.app, self.sessions, self.login_url, self.instance_url,
                                                 refresh_token=refresh))

    def _revoke(self, req: Request) -> Response:
        """Revoke an access token, or a refresh token and its access tokens: 200, or 400
        ``invalid_token`` for a token the org never issued (or already revoked)."""
        if req.method not in ("POST", "GET"):
            return Response.json(405, {"error": "invalid_request", "error_description": "must use HTTP POST"})
        if not self.sessions.revoke(_form(req).get("token", "")):
            return Response.json(400, {"error": "invalid_token", "error_description": "Token was invalid"})
        return Response(200, "", content_type="text/plain")
