"""OAuth 2.0 token endpoint of the sandbox org: client credentials, username-password,
JWT bearer (RS256 assertion verified against the connected app's certificate: iss =
client id, sub = username, aud = login URL, exp in the future) and the refresh token flow
(a refresh token the org issued for its connected app, with the app's client id and
secret, as "Require Secret for Refresh Token Flow" asks; an unknown or revoked one is
``invalid_grant`` / ``expired access/refresh token``). Error bodies follow Salesforce's
``{"error", "error_description"}`` shape with HTTP 400. ``/services/oauth2/revoke`` revokes
an access token, or a refresh token and every access token issued from it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from gtm_sandbox.org.ids import make_id

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
REFRESH_GRANT = "refresh_token"


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass
class ConnectedApp:
    client_id: str
    client_secret: str
    public_key_pem: bytes  # certificate's public key, for JWT bearer
    username: str
    password: str
    user_id: str
    org_id: str
    audiences: tuple[str, ...]


@dataclass
class Sessions:
    """Issued access tokens; ``expire_all`` makes every one answer 401 INVALID_SESSION_ID."""

    tokens: dict[str, float] = field(default_factory=dict)
    lifetime_s: float = 7200.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    issued: int = 0
    refresh_tokens: set[str] = field(default_factory=set)  # live refresh tokens of the connected app
    from_refresh: dict[str, set[str]] = field(default_factory=dict)  # refresh token -> access tokens

    def issue(self, org_id: str, *, refresh_token: str | None = None) -> str:
        token = f"{org_id[:15]}!AQ{secrets.token_urlsafe(72)}"
        with self.lock:
            self.tokens[token] = time.monotonic() + self.lifetime_s
            self.issued += 1
            if refresh_token is not None:
                self.from_refresh.setdefault(refresh_token, set()).add(token)
        return token

    def issue_refresh_token(self) -> str:
        """A new refresh token for the connected app (Salesforce's start with ``5Aep``)."""
        token = "5Aep" + secrets.token_urlsafe(64)
        with self.lock:
            self.refresh_tokens.add(token)
        return token

    def refresh_token_valid(self, token: str) -> bool:
        with self.lock:
            return any(hmac.compare_digest(token, t) for t in self.refresh_tokens)

    def revoke(self, token: str) -> bool:
        """Revoke an access token, or a refresh token and the access tokens issued from it;
        False if the token is unknown."""
        with self.lock:
            if token in self.refresh_tokens:
                self.refresh_tokens.discard(token)
                for access in self.from_refresh.pop(token, set()):
                    self.tokens.pop(access, None)
                return True
            return self.tokens.pop(token, None) is not None

    def valid(self, token: str) -> bool:
        with self.lock:
            expiry = self.tokens.get(token)
            if expiry is None:
                return False
            if expiry < time.monotonic():
                del self.tokens[token]
                return False
            return True

    def expire_all(self) -> int:
        with self.lock:
            n = len(self.tokens)
            self.tokens.clear()
            return n


def token_response(app: ConnectedApp, sessions: Sessions, login_url: str, instance_url: str,
                   refresh_token: str | None = None) -> dict[str, Any]:
    """The token endpoint's answer. The refresh token flow answers without a new refresh
    token (no rotation), as Salesforce does unless the app rotates them."""
    issued_at = str(int(time.time() * 1000))
    identity = f"{login_url}/id/{app.org_id}/{app.user_id}"
    signature = base64.b64encode(
        hmac.new(app.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
    ).decode()
    return {
        "access_token": sessions.issue(app.org_id, refresh_token=refresh_token),
        "instance_url": instance_url,
        "id": identity,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": signature,
        "scope": "api",
    }


def _basic_auth(headers: dict[str, str]) -> tuple[str, str] | None:
    value = headers.get("authorization", "")
    if not value.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password


def grant(app: ConnectedApp, form: dict[str, str], headers: dict[str, str], sessions: Sessions) -> None:
    """Check a token request; raise OAuthError when Salesforce would refuse it."""
    grant_type = form.get("grant_type", "")
    if grant_type == REFRESH_GRANT:
        _check_client(app, form, headers)
        if not sessions.refresh_token_valid(form.get("refresh_token", "")):
            raise OAuthError("invalid_grant", "expired access/refresh token")
        return
    if grant_type == "client_credentials":
        _check_client(app, form, headers)
        return
    if grant_type == "password":
        if form.get("client_id") != app.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        secret = form.get("client_secret")
        if secret is not None and not hmac.compare_digest(secret, app.client_secret):
            raise OAuthError("invalid_client", "invalid client credentials")
        if form.get("username") != app.username or not hmac.compare_digest(form.get("password", ""), app.password):
            raise OAuthError("invalid_grant", "authentication failure")
        return
    if grant_type == JWT_GRANT:
        _check_assertion(app, form.get("assertion", ""))
        return
    raise OAuthError("unsupported_grant_type", "grant type not supported")


def _check_client(app: ConnectedApp, form: dict[str, str], headers: dict[str, str]) -> None:
    """The connected app's client id and secret, from HTTP Basic auth or the form."""
    creds = _basic_auth(headers) or (form.get("client_id", ""), form.get("client_secret", ""))
    if creds[0] != app.client_id:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    if not hmac.compare_digest(creds[1], app.client_secret):
        raise OAuthError("invalid_client", "invalid client credentials")


def _check_assertion(app: ConnectedApp, assertion: str) -> None:
    try:
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise OAuthError("invalid_grant", "invalid assertion") from None
    if unverified.get("iss") != app.client_id:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    try:
        claims = jwt.decode(
            assertion,
            app.public_key_pem,
            algorithms=["RS256"],
            audience=list(app.audiences),
            options={"require": ["iss", "sub", "aud", "exp"]},
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        raise OAuthError("invalid_grant", "expired authorization code") from None
    except jwt.InvalidAudienceError:
        raise OAuthError("invalid_grant", "audience is invalid") from None
    except jwt.InvalidTokenError:
        raise OAuthError("invalid_grant", "invalid assertion") from None
    if claims.get("sub") != app.username:
        raise OAuthError("invalid_grant", "user hasn't approved this consumer")


def new_user_id(n: int = 1) -> str:
    return make_id("005", n, pod="Us")
