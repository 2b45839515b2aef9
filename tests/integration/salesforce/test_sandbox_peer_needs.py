"""What other Salesforce extractors need of the sandbox org, as Salesforce documents it: the
OAuth refresh token flow (and revoking tokens), ``composite/batch``, and the API-version
gate of the GTM objects, which only a benchmark may relax."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import requests

from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.org.schema import load_org_schema
from tests.fixtures.org import client_credentials_token, tls_session


def _refresh(org: SandboxOrg, refresh_token: str, **overrides: str) -> requests.Response:
    form = {"grant_type": "refresh_token", "client_id": org.client_id, "client_secret": org.client_secret,
            "refresh_token": refresh_token, **overrides}
    return tls_session(org).post(org.login_url + "/services/oauth2/token", data=form)


def _revoke(org: SandboxOrg, token: str) -> requests.Response:
    return tls_session(org).post(org.login_url + "/services/oauth2/revoke", data={"token": token})


def _get(org: SandboxOrg, access_token: str, path: str) -> requests.Response:
    return tls_session(org).get(f"{org.instance_url}/services/data/v{org.api_version}/{path}",
                                headers={"Authorization": f"Bearer {access_token}"})


# ------------------------------------------------------------------ refresh token flow


def test_refresh_token_grant_answers_like_salesforce(sandbox_org: SandboxOrg) -> None:
    resp = _refresh(sandbox_org, sandbox_org.refresh_token())
    body = resp.json()
    assert resp.status_code == 200
    assert set(body) >= {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"}
    assert body["instance_url"] == sandbox_org.instance_url
    assert body["token_type"] == "Bearer"
    assert body["id"].endswith(f"/id/{sandbox_org.org_id}/{sandbox_org.user_id}")
    assert "refresh_token" not in body  # no rotation: the same refresh token serves again
    assert _get(sandbox_org, body["access_token"], "sobjects").status_code == 200
    assert _refresh(sandbox_org, sandbox_org.refresh_token()).status_code == 200


def test_the_org_hands_out_its_refresh_token_with_the_connection_facts(sandbox_org: SandboxOrg) -> None:
    assert sandbox_org.connection_info()["refresh_token"] == sandbox_org.refresh_token()
    assert sandbox_org.refresh_token().startswith("5Aep")


def test_sandbox_org_json_prints_a_refresh_token_that_works() -> None:
    process = subprocess.Popen([sys.executable, "-m", "connector.entrypoints.cli", "sandbox", "org", "--json",
                                "--data", "none"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        session = requests.Session()
        session.trust_env = False
        session.verify = info["ca_file"]
        resp = session.post(info["login_url"] + "/services/oauth2/token", data={
            "grant_type": "refresh_token", "refresh_token": info["refresh_token"], "client_id": info["client_id"],
            "client_secret": info["client_secret"]})
        assert resp.status_code == 200 and resp.json()["instance_url"] == info["instance_url"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_unknown_refresh_token_is_invalid_grant(sandbox_org: SandboxOrg) -> None:
    resp = _refresh(sandbox_org, "5Aep" + "x" * 80)
    assert resp.status_code == 400
    assert resp.json() == {"error": "invalid_grant", "error_description": "expired access/refresh token"}


def test_refresh_token_with_the_wrong_client_is_refused(sandbox_org: SandboxOrg) -> None:
    wrong_secret = _refresh(sandbox_org, sandbox_org.refresh_token(), client_secret="nope")
    wrong_client = _refresh(sandbox_org, sandbox_org.refresh_token(), client_id="3MVG9other")
    assert wrong_secret.json() == {"error": "invalid_client", "error_description": "invalid client credentials"}
    assert wrong_client.json() == {"error": "invalid_client_id", "error_description": "client identifier invalid"}


def test_a_revoked_refresh_token_and_its_access_tokens_stop_working(sandbox_org: SandboxOrg) -> None:
    refresh = sandbox_org.issue_refresh_token()
    access = _refresh(sandbox_org, refresh).json()["access_token"]
    other = client_credentials_token(sandbox_org, tls_session(sandbox_org))

    assert _revoke(sandbox_org, refresh).status_code == 200

    again = _refresh(sandbox_org, refresh)
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant", "error_description": "expired access/refresh token"}
    assert _get(sandbox_org, access, "sobjects").status_code == 401
    assert _get(sandbox_org, other, "sobjects").status_code == 200  # a token of another grant lives on
    assert _refresh(sandbox_org, sandbox_org.refresh_token()).status_code == 200  # as does the org's own


def test_revoking_an_unknown_token_is_invalid_token(sandbox_org: SandboxOrg) -> None:
    resp = _revoke(sandbox_org, "not-a-token")
    assert resp.status_code == 400
    assert resp.json() == {"error": "invalid_token", "error_description": "Token was invalid"}


def test_revoking_an_access_token_ends_that_session(sandbox_org: SandboxOrg) -> None:
    access = client_credentials_token(sandbox_org, tls_session(sandbox_org))
    assert _revoke(sandbox_org, access).status_code == 200
    assert _get(sandbox_org, access, "sobjects").status_code == 401


# ------------------------------------------------------------------ composite/batch


def _batch(org: SandboxOrg, body: dict[str, object]) -> requests.Response:
    token = client_credentials_token(org, tls_session(org))
    return tls_session(org).post(f"{org.instance_url}/services/data/v{org.api_version}/composite/batch", json=body,
                                 headers={"Authorization": f"Bearer {token}"})


def test_composite_batch_runs_independent_subrequests_in_one_call(sandbox_org: SandboxOrg) -> None:
    v = f"v{sandbox_org.api_version}"
    sandbox_org.reset_counters()
    resp = _batch(sandbox_org, {"batchRequests": [
        {"method": "GET", "url": f"{v}/query?q=SELECT+Id,+Name+FROM+SfdcPartnerOrder"},
        {"method": "POST", "url": f"{v}/sobjects/GTM_Order_Billing__c",
         "richInput": {"Name": "B-1", "Order_Id__c": "801000000000001"}},
        {"method": "GET", "url": f"{v}/sobjects/NoSuchThing/describe"},
        {"method": "GET", "url": f"{v}/sobjects/SfdcPartnerOrder/describe"},
    ]})
    body = resp.json()
    assert resp.status_code == 200
    assert body["hasErrors"] is True  # one subrequest failed; the others still ran
    statuses = [r["statusCode"] for r in body["results"]]
    assert statuses == [200, 201, 404, 200]
    query, created, missing, describe = (r["result"] for r in body["results"])
    assert query["totalSize"] == len(sandbox_org.records("SfdcPartnerOrder"))
    assert created["success"] is True and sandbox_org.get("GTM_Order_Billing__c", created["id"]) is not None
    assert missing[0]["errorCode"] == "NOT_FOUND"
    assert describe["name"] == "SfdcPartnerOrder"
    assert sandbox_org.counters()["calls"]["composite_batch"] == 1
    assert sandbox_org.api_calls == 1  # one API call, whatever it holds


def test_composite_batch_halts_on_error_when_asked(sandbox_org: SandboxOrg) -> None:
    v = f"v{sandbox_org.api_version}"
    resp = _batch(sandbox_org, {"haltOnError": True, "batchRequests": [
        {"method": "GET", "url": f"{v}/sobjects/NoSuchThing/describe"},
        {"method": "GET", "url": f"{v}/limits"},
    ]})
    body = resp.json()
    assert resp.status_code == 200 and body["hasErrors"] is True
    assert [r["statusCode"] for r in body["results"]] == [404, 412]
    assert body["results"][1]["result"][0]["errorCode"] == "BATCH_PROCESSING_HALTED"


def test_composite_batch_takes_at_most_25_subrequests(sandbox_org: SandboxOrg) -> None:
    v = f"v{sandbox_org.api_version}"
    resp = _batch(sandbox_org, {"batchRequests": [{"method": "GET", "url": f"{v}/limits"}] * 26})
    assert resp.status_code == 400
    assert resp.json()[0]["errorCode"] == "LIMIT_EXCEEDED"


# ------------------------------------------------------------------ the API-version gate


def test_gtm_objects_do_not_exist_at_older_api_versions_by_default(sandbox_org: SandboxOrg) -> None:
    token = client_credentials_token(sandbox_org, tls_session(sandbox_org))
    session = tls_session(sandbox_org)
    headers = {"Authorization": f"Bearer {token}"}
    old = session.get(f"{sandbox_org.instance_url}/services/data/v62.0/sobjects", headers=headers).json()
    names = {o["name"] for o in old["sobjects"]}
    assert "SfdcPartnerOrder" not in names and "GTM_Order_Billing__c" in names
    describe = session.get(f"{sandbox_org.instance_url}/services/data/v62.0/sobjects/SfdcPartnerOrder/describe",
                           headers=headers)
    assert describe.status_code == 404
    assert load_org_schema().get("SfdcPartnerOrder", "61.0") is None


def test_the_benchmark_switch_shows_every_object_at_every_version() -> None:
    with SandboxOrg.start(data=None, version_gate=False) as org:
        session = tls_session(org)
        headers = {"Authorization": f"Bearer {client_credentials_token(org, session)}"}
        old = session.get(f"{org.instance_url}/services/data/v61.0/sobjects", headers=headers).json()
        assert {"SfdcPartnerOrder", "SfdcPartnerOrderItem", "SfdcPartnerPayout"} <= {o["name"] for o in old["sobjects"]}
        query = session.get(f"{org.instance_url}/services/data/v61.0/query", headers=headers,
                            params={"q": "SELECT Id FROM SfdcPartnerOrder"})
        assert query.status_code == 200


def test_describes_carry_the_flags_extractors_filter_on(sandbox_org: SandboxOrg) -> None:
    token = client_credentials_token(sandbox_org, tls_session(sandbox_org))
    listed = {o["name"]: o for o in _get(sandbox_org, token, "sobjects").json()["sobjects"]}
    described = _get(sandbox_org, token, "sobjects/SfdcPartnerOrder/describe").json()
    assert listed["SfdcPartnerOrder"]["queryable"] is True  # airbyte keeps queryable objects only
    assert listed["SfdcPartnerOrder"]["customSetting"] is False
    assert described["customSetting"] is False  # tap-salesforce skips custom settings
