"""``/services/oauth2/token``: the OAuth grants of the connected app,
``/services/oauth2/revoke`` (see ``org/auth.py``), the identity URL (``/id/{org}/{user}``)
the token response names and OpenID Connect's ``/services/oauth2/userinfo``."""

from __future__ import annotations

from urllib.parse import parse_qs

from gtm_sandbox.org.auth import REFRESH_GRANT, OAuthError, Sessions, grant, token_response
from gtm_sandbox.org.ids import to_18
from gtm_sandbox.org.messages import Request, Response
from gtm_sandbox.org.routes.versions import SUPPORTED_VERSIONS

# The identity service's documented errors: plain-text codes, not the REST error list.
_IDENTITY_ERRORS = {"Missing_OAuth_Token": 403, "Bad_OAuth_Token": 403, "Wrong_Org": 403, "Bad_Id": 404,
                    "Invalid_Version": 406}


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

    def _identity(self, req: Request) -> Response:
        """GET the identity URL (``/id/{orgId}/{userId}``) with the access token (header or
        ``oauth_token``): the user and org, and the API URLs, ``{version}`` left in them
        unless ``?version=`` names one (or ``latest``)."""
        refused = _token_refused(self.sessions, req, "oauth_token")
        if refused is not None:
            return refused
        parts = req.segments[1:]
        try:
            org, user = (to_18(p) for p in parts) if len(parts) == 2 else ("", "")
        except ValueError:
            return _identity_error("Bad_Id")
        if org != self.app.org_id:
            return _identity_error("Wrong_Org" if org else "Bad_Id")
        if user != self.app.user_id:
            return _identity_error("Bad_Id")
        version = req.param("version") or "{version}"
        if version == "latest":
            version = SUPPORTED_VERSIONS[-1]
        elif version != "{version}" and version not in SUPPORTED_VERSIONS:
            return _identity_error("Invalid_Version")
        return Response.json(200, {
            "id": f"{self.login_url}/id/{org}/{user}", "asserted_user": True, "user_id": user,
            "organization_id": org, "username": self.app.username, "nick_name": self.app.username.split("@")[0],
            "display_name": "Integration User", "email": self.app.username, "email_verified": True,
            "status": {"created_date": None, "body": None}, "active": True, "user_type": "STANDARD",
            "language": "en_US", "locale": "en_US", "utcOffset": 0, "is_app_installed": True,
            "urls": _api_urls(self.instance_url, user, version),
        })


class UserInfoRoutes:
    """``/services/oauth2/userinfo``, mixed into ``OrgApi``."""

    def _userinfo(self, req: Request) -> Response:
        """OpenID Connect's UserInfo endpoint (GET or POST with the access token): the
        user's claims (``sub`` is the identity URL) and the org's API URLs; the identity
        service's plain-text errors for a missing or bad token."""
        if req.method not in ("GET", "POST"):
            return Response.json(405, {"error": "invalid_request", "error_description": "must use HTTP GET or POST"})
        refused = _token_refused(self.sessions, req, "access_token")
        if refused is not None:
            return refused
        org, user = self.app.org_id, self.app.user_id
        return Response.json(200, {
            "sub": f"{self.login_url}/id/{org}/{user}", "user_id": user, "organization_id": org,
            "preferred_username": self.app.username, "nickname": self.app.username.split("@")[0],
            "name": "Integration User", "email": self.app.username, "email_verified": True,
            "given_name": "Integration", "family_name": "User", "zoneinfo": "GMT", "active": True,
            "user_type": "STANDARD", "language": "en_US", "locale": "en_US", "utcOffset": 0,
            "updated_at": None, "is_app_installed": True,
            "urls": _api_urls(self.instance_url, user, "{version}"),
        })


def _token_refused(sessions: Sessions, req: Request, param: str) -> Response | None:
    """The identity service's answer to a missing or unknown access token (from the
    ``Authorization: Bearer`` header, else the ``param`` query parameter); None when valid."""
    value = req.headers.get("authorization", "")
    token = value[7:] if value.lower().startswith("bearer ") else req.param(param) or ""
    if not token:
        return _identity_error("Missing_OAuth_Token")
    if not sessions.valid(token):
        return _identity_error("Bad_OAuth_Token")
    return None


def _api_urls(instance_url: str, user: str, version: str) -> dict[str, str]:
    """The ``urls`` of the identity and UserInfo answers (``{version}`` left in when none is named)."""
    data = f"{instance_url}/services/data/v{version}"
    return {"rest": f"{data}/", "sobjects": f"{data}/sobjects/", "search": f"{data}/search/",
            "query": f"{data}/query/", "recent": f"{data}/recent/", "limits": f"{data}/limits/",
            "profile": f"{instance_url}/{user}", "custom_domain": instance_url}


def _identity_error(code: str) -> Response:
    return Response(_IDENTITY_ERRORS[code], code, content_type="text/plain;charset=UTF-8")
