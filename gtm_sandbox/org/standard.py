"""The records every org has whatever its data: its one Organization record (Id the org
id, a sandbox: ``IsSandbox`` true, no ``TrialExpirationDate``, no namespace) and the
integration user the token's identity URL and UserInfo name, so ``sobjects/User/{user_id}``
reads the user they describe (same name, username, email, language)."""

from __future__ import annotations

from gtm_sandbox.org.auth import ConnectedApp
from gtm_sandbox.org.data import OrgData
from gtm_sandbox.org.ids import make_id

ORG_NAME = "GTM Sandbox Partner Org"
INSTANCE_NAME = "CS42"  # a sandbox instance (InstanceName: 5 characters at most)
PROFILE_ID = make_id("00e", 1, pod="Sb")  # the integration user's profile (Profile is not modelled)


def seed_standard_records(data: OrgData, app: ConnectedApp) -> None:
    """Plant the Organization and User records (control-API writes: no validation)."""
    now = data.clock.now()
    user = {
        "Id": app.user_id, "Username": app.username, "FirstName": "Integration", "LastName": "User",
        "Name": "Integration User", "Email": app.username, "Alias": "integ",
        "CommunityNickname": app.username.split("@")[0], "IsActive": True, "TimeZoneSidKey": "GMT",
        "LocaleSidKey": "en_US", "LanguageLocaleKey": "en_US", "EmailEncodingKey": "UTF-8",
        "ProfileId": PROFILE_ID, "UserType": "Standard", "CompanyName": ORG_NAME,
        "CreatedById": app.user_id, "LastModifiedById": app.user_id,
    }
    organization = {
        "Id": app.org_id, "Name": ORG_NAME, "DefaultLocaleSidKey": "en_US", "TimeZoneSidKey": "GMT",
        "LanguageLocaleKey": "en_US", "ReceivesInfoEmails": False, "ReceivesAdminInfoEmails": False,
        "FiscalYearStartMonth": 1, "UsesStartDateAsFiscalYearName": False, "OrganizationType": "Enterprise Edition",
        "NamespacePrefix": None, "InstanceName": INSTANCE_NAME, "IsSandbox": True, "IsReadOnly": False,
        "TrialExpirationDate": None, "Country": "United States", "SignupCountryIsoCode": "US",
        "CreatedById": app.user_id, "LastModifiedById": app.user_id,
    }
    for sobject, values in (("User", user), ("Organization", organization)):
        if data.schema.get(sobject) is not None:  # a test-only schema may drop them
            data.insert(sobject, values, validate=False, stamp=now)
