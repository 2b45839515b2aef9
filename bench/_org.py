"""The org config the mirror benches run with: one bench org on the sandbox org whose
connection facts (``sandbox org --json``) are ``info``, on the given database."""

from __future__ import annotations

from typing import Any


def bench_org_config(info: dict[str, Any], database_url: str, **sections: Any) -> Any:
    """``sections`` adds or replaces top-level config keys (e.g. ``sync={...}``)."""
    from connector.config import parse_config

    return parse_config({
        "org": {"alias": "bench", "org_id": info["org_id"]},
        "invoicing": {"issuer": "connector"},
        "salesforce": {"login_url": info["login_url"], "ca_bundle": info["ca_file"],
                       "auth": {"kind": "client_credentials", "client_id": info["client_id"],
                                "client_secret": {"env": "S"}}},
        "stripe": {"api_key": {"env": "K"}},
        "database_url": database_url,
        **sections,
    }, environ={"S": info["client_secret"], "K": "sk_test_bench"})
