"""`gtm-connector sandbox stripe --json` runs the server standalone until SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import stripe

from gtm_sandbox.stripe import RemoteStripeSandbox


def test_standalone_server_prints_its_address_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "connector.entrypoints.cli", "sandbox", "stripe", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["api_base"].startswith("http://127.0.0.1:")
        assert ready["api_key"].startswith("sk_test_")

        client = stripe.StripeClient(ready["api_key"], base_addresses={"api": ready["api_base"]},
                                     max_network_retries=0)
        customer = client.v1.customers.create(params={"email": "ap@acme.example"})
        remote = RemoteStripeSandbox(ready["api_base"], ready["api_key"])
        assert remote.counters() == {"POST /v1/customers": 1}
        remote.fail_next("GET /v1/customers/{id}", fault=500)
        try:
            client.v1.customers.retrieve(customer.id)
        except stripe.APIError:
            pass
        assert client.v1.customers.retrieve(customer.id).email == "ap@acme.example"
        assert remote.advance_clock(days=1) >= remote.now() - 1

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
