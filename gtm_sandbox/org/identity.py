"""What makes a sandbox org the same org to its clients after a restart: the CA its TLS
certificate is issued by, and the connected app's credentials (client id and secret, the
integration user and password, the JWT key pair).

``SandboxOrg.start`` makes a fresh ``OrgIdentity.new()`` unless given one; ``save(state)``
and ``load(state)`` keep one in a state directory (see ``gtm_sandbox/statedir.py``), every
file owner-only. The org id is not part of it: it follows from ``org_number``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gtm_sandbox.org.auth import new_user_id
from gtm_sandbox.statedir import StateDir

IDENTITY_FILE = "connected_app.json"
CA_CERT, CA_KEY, JWT_KEY = "ca_cert.pem", "ca_key.pem", "jwt_private_key.pem"
CLIENT_SECRET, PASSWORD = "client_secret", "password"


@dataclass(frozen=True)
class OrgIdentity:
    ca_cert_pem: bytes
    ca_key_pem: bytes
    client_id: str
    client_secret: str
    username: str
    password: str
    user_id: str
    jwt_private_key_pem: bytes | None  # None: JWT assertions are checked against a key given at start

    @classmethod
    def new(cls, *, jwt_key: bool = True) -> OrgIdentity:
        ca = trustme.CA()
        key_pem = None
        if jwt_key:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        return cls(
            ca_cert_pem=ca.cert_pem.bytes(),
            ca_key_pem=ca.private_key_pem.bytes(),
            client_id="3MVG9sandbox" + secrets.token_hex(16),
            client_secret=secrets.token_hex(32),
            username="integration@gtm-sandbox.example.com",
            password=secrets.token_urlsafe(18),
            user_id=new_user_id(),
            jwt_private_key_pem=key_pem,
        )

    def ca(self) -> trustme.CA:
        return trustme.CA.from_pem(self.ca_cert_pem, self.ca_key_pem)

    def jwt_public_key_pem(self) -> bytes:
        if self.jwt_private_key_pem is None:
            raise ValueError("this identity has no JWT key pair")
        key = serialization.load_pem_private_key(self.jwt_private_key_pem, password=None)
        return key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)

    # ------------------------------------------------------------ a state directory

    def save(self, state: StateDir) -> None:
        state.write_secret(CA_CERT, self.ca_cert_pem)
        state.write_secret(CA_KEY, self.ca_key_pem)
        if self.jwt_private_key_pem is not None:
            state.write_secret(JWT_KEY, self.jwt_private_key_pem)
        state.write_secret(CLIENT_SECRET, self.client_secret)
        state.write_secret(PASSWORD, self.password)
        state.write_json(IDENTITY_FILE, {"client_id": self.client_id, "username": self.username,
                                         "user_id": self.user_id})

    @classmethod
    def load(cls, state: StateDir) -> OrgIdentity | None:
        """The identity saved in ``state``, or None when there is none yet; a partial one
        (a file deleted by hand) is a ``ValueError`` naming what is missing."""
        if not state.has(IDENTITY_FILE):
            return None
        facts = state.read_json(IDENTITY_FILE)
        cert, key = state.read_bytes(CA_CERT), state.read_bytes(CA_KEY)
        secret, password = state.read_text(CLIENT_SECRET), state.read_text(PASSWORD)
        missing = [name for name, value in ((CA_CERT, cert), (CA_KEY, key), (CLIENT_SECRET, secret),
                                            (PASSWORD, password)) if not value]
        missing += [name for name in ("client_id", "username", "user_id") if not facts.get(name)]
        if missing:
            raise ValueError(f"{state.path}: the saved org identity is incomplete (missing {', '.join(missing)}); "
                             "remove the directory to start afresh")
        assert cert is not None and key is not None and secret is not None and password is not None
        return cls(ca_cert_pem=cert, ca_key_pem=key, client_id=str(facts["client_id"]), client_secret=secret,
                   username=str(facts["username"]), password=password, user_id=str(facts["user_id"]),
                   jwt_private_key_pem=state.read_bytes(JWT_KEY))
