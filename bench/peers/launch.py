"""Run a peer extractor (tap-salesforce or airbyte source-salesforce) against the sandbox org.

Run with the peer's own virtualenv python (it imports only the peer and the standard
library), never the project's:

    bench/.venvs/tap-salesforce/bin/python bench/peers/launch.py \
        --login-url https://127.0.0.1:PORT --calls calls.json tap -- --config c.json --discover

Both peers hard-code the login host of their token call (``login.salesforce.com``, or
``test.salesforce.com`` for a sandbox) and take every other URL from the token answer's
``instance_url``. This launcher rewrites only that host, at the URL level in
``requests``' transport adapter (the layer every session of theirs sends through), to the
sandbox org's login URL, and counts each HTTP request the peer sends (by kind: token,
query pages, describe, Bulk jobs). TLS is verified as usual, against the org's CA given in
``REQUESTS_CA_BUNDLE``. ``airbyte --api rest`` makes the airbyte source pick its REST
streams for every object (its own choice is Bulk 2.0 for objects without compound or
base64 fields); nothing else of the peers is changed.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com")


def kind(path: str) -> str:
    if path.startswith("/services/oauth2/"):
        return "oauth"
    parts = path.split("/")
    # /services/data/vNN.N/<resource>/...
    resource = parts[4] if len(parts) > 4 and parts[1:3] == ["services", "data"] else ""
    if resource in ("query", "queryAll"):
        return "query"
    if resource == "sobjects":
        return "describe" if (len(parts) == 5 or parts[-1] == "describe") else "sobjects"
    if resource == "jobs":
        return "bulk"
    return resource or "other"


def install(login_url: str, calls_file: str) -> None:
    import requests.adapters

    target = urlsplit(login_url)
    counts: Counter[str] = Counter()
    original = requests.adapters.HTTPAdapter.send

    def send(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        url = urlsplit(request.url)
        if url.hostname in LOGIN_HOSTS:
            request.url = urlunsplit((target.scheme, target.netloc, url.path, url.query, url.fragment))
            request.headers.pop("Host", None)
        counts[kind(urlsplit(request.url).path)] += 1
        return original(self, request, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]

    def dump() -> None:
        with open(calls_file, "w", encoding="utf-8") as fh:
            json.dump({"total": sum(counts.values()), **counts}, fh)

    atexit.register(dump)


def force_rest() -> None:
    from source_salesforce.source import SourceSalesforce

    SourceSalesforce._get_api_type = classmethod(lambda cls, name, schema, force_bulk: "rest")  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--login-url", required=True)
    parser.add_argument("--calls", required=True, help="write the request counts here (JSON) at exit")
    parser.add_argument("--api", choices=("default", "rest"), default="default")
    parser.add_argument("--out", help="the peer's standard output (its messages) goes to this file")
    parser.add_argument("peer", choices=("tap", "airbyte"))
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args()
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    install(ns.login_url, ns.calls)
    if ns.out:
        sys.stdout.flush()
        os.dup2(os.open(ns.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
    if ns.peer == "tap":
        import tap_salesforce

        sys.argv = ["tap-salesforce", *args]
        tap_salesforce.main()
    else:
        if ns.api == "rest":
            force_rest()
        from source_salesforce.run import run

        sys.argv = ["source-salesforce", *args]
        run()


if __name__ == "__main__":
    main()
