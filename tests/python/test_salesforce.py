"""simple-salesforce, unchanged, against the Salesforce emulator."""
import base64
import hashlib
import json
import re

import pytest
import requests
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from conftest import admin


def oauth_session(sim):
    sf = sim.info["salesforce"]
    r = requests.post(f"{sf['url']}/services/oauth2/token", data={
        "grant_type": "password", "client_id": sf["client_id"], "client_secret": sf["client_secret"],
        "username": sf["username"], "password": sf["password"] + sf["security_token"],
    })
    r.raise_for_status()
    token = r.json()
    return Salesforce(instance_url=token["instance_url"], session_id=token["access_token"])


@pytest.fixture(scope="module")
def sf(sim):
    return oauth_session(sim)


def test_oauth_token_rejects_bad_credentials(sim):
    sf = sim.info["salesforce"]
    r = requests.post(f"{sf['url']}/services/oauth2/token", data={
        "grant_type": "password", "client_id": sf["client_id"], "client_secret": sf["client_secret"],
        "username": sf["username"], "password": "wrong",
    })
    assert r.status_code == 400
    assert r.json() == {"error": "invalid_grant", "error_description": "authentication failure"}


def token_url_in(url):
    """simple-salesforce builds `https://{domain}.salesforce.com/services/oauth2/token`; a domain
    argument ending in `/services/oauth2/token#` points it at the emulator, the rest being a fragment."""
    return url.removeprefix("https://") + "/services/oauth2/token#"


def test_jwt_bearer_login_as_simple_salesforce_does_it(sim):
    info = sim.info["salesforce"]
    # domain='login' makes the audience https://login.salesforce.com; instance_url is where the token request goes.
    sf = Salesforce(username=info["username"], consumer_key=info["client_id"], privatekey_file=info["private_key"],
                    domain="login", instance_url=token_url_in(info["url"]))
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] >= 1
    with pytest.raises(SalesforceAuthenticationFailed) as refused:
        Salesforce(username="pat.partner@acme.example", consumer_key=info["client_id"], privatekey_file=info["private_key"],
                   domain="login", instance_url=token_url_in(info["url"]))
    assert "user hasn't approved this consumer" in str(refused.value)


def test_client_credentials_as_simple_salesforce_does_them(sim):
    info = sim.info["salesforce"]
    # The client in a Basic header, at the org's My Domain (127.0.0.1).
    sf = Salesforce(consumer_key=info["client_id"], consumer_secret=info["client_secret"], domain=token_url_in(info["url"]))
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] >= 1
    # The login host (localhost) refuses the flow, as login.salesforce.com does.
    with pytest.raises(SalesforceAuthenticationFailed) as refused:
        Salesforce(consumer_key=info["client_id"], consumer_secret=info["client_secret"], domain=token_url_in(info["login_url"]))
    assert "request not supported on this domain" in str(refused.value)


def test_soap_login_as_simple_salesforce_does_it(sim):
    info = sim.info["salesforce"]
    session_id, instance = SalesforceLogin(
        username=info["username"], password=info["password"], security_token=info["security_token"],
        scratch_url=info["url"],
    )
    assert instance == info["url"].removeprefix("https://")
    sf = Salesforce(instance=instance, session_id=session_id)
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] >= 1

    with pytest.raises(SalesforceAuthenticationFailed) as failed:
        SalesforceLogin(username=info["username"], password="nope", security_token="", scratch_url=info["url"])
    assert failed.value.code == "INVALID_LOGIN"


def test_a_bad_session_is_refused(sim):
    sf = Salesforce(instance_url=sim.info["salesforce"]["url"], session_id="not-a-session")
    with pytest.raises(SalesforceExpiredSession) as err:
        sf.Case.get("500000000000000AAA")
    assert err.value.content[0]["errorCode"] == "INVALID_SESSION_ID"


def test_case_create_get_update_delete(sf):
    account = sf.Account.create({"Name": "Acme Corporation", "External_Id__c": "ACME-001", "AnnualRevenue": 5e7, "Tier__c": "Gold"})
    assert account["success"] and account["id"].startswith("001") and len(account["id"]) == 18

    created = sf.Case.create({"Subject": "Checkout API returns 502", "Priority": "High", "AccountId": account["id"], "Origin": "Web"})
    case_id = created["id"]
    assert created == {"id": case_id, "success": True, "errors": []}
    assert case_id.startswith("500") and len(case_id) == 18

    case = sf.Case.get(case_id)
    assert case["attributes"]["type"] == "Case"
    assert case["Subject"] == "Checkout API returns 502"
    assert case["Status"] == "New", "picklist default"
    assert re.fullmatch(r"\d{8}", case["CaseNumber"])
    assert case["IsClosed"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", case["SystemModstamp"])
    # 15-character ids work too.
    assert sf.Case.get(case_id[:15])["Id"] == case_id

    cases = sf.Case  # simple-salesforce builds a new SFType per attribute access; keep one
    assert cases.update(case_id, {"Status": "Closed", "ServiceNow_Incident__c": "0" * 32}) == 204
    case = sf.Case.get(case_id)
    assert case["Status"] == "Closed" and case["IsClosed"] is True and case["ClosedDate"]
    assert case["SystemModstamp"] >= case["CreatedDate"]

    assert cases.api_usage["api-usage"].used > 0, "Sforce-Limit-Info is parsed by the client"

    assert sf.Case.delete(case_id) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Case.get(case_id)


def test_validation_errors_carry_salesforce_error_bodies(sf):
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Case.create({"Subject": "x", "NoSuchField__c": 1})
    assert err.value.content == [{"message": "No such column 'NoSuchField__c' on sobject of type Case", "errorCode": "INVALID_FIELD", "fields": ["NoSuchField__c"]}]

    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Case.create({"Priority": "Urgent"})
    assert err.value.content[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"

    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Account.create({"Phone": "1"})
    assert err.value.content[0] == {"message": "Required fields are missing: [Name]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["Name"]}

    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Case.create({"CaseNumber": "1"})
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"

    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Case.create({"AccountId": "001000000000000AAA"})
    assert err.value.content[0]["errorCode"] in ("INVALID_CROSS_REFERENCE_KEY", "MALFORMED_ID")


def test_upsert_by_external_id(sf):
    assert sf.Account.upsert("External_Id__c/GLOBEX-9", {"Name": "Globex"}) == 201
    assert sf.Account.upsert("External_Id__c/GLOBEX-9", {"AnnualRevenue": 1200000}) == 200
    rows = sf.query("SELECT Id, Name, AnnualRevenue FROM Account WHERE External_Id__c = 'GLOBEX-9'")["records"]
    assert len(rows) == 1 and rows[0]["Name"] == "Globex" and rows[0]["AnnualRevenue"] == 1200000
    got = sf.Account.get_by_custom_id("External_Id__c", "GLOBEX-9")
    assert got["Id"] == rows[0]["Id"]

    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Account.create({"Name": "Globex again", "External_Id__c": "GLOBEX-9"})
    assert err.value.content[0]["errorCode"] == "DUPLICATE_VALUE"


def test_soql_where_order_limit_and_relationships(sf):
    acct = sf.Account.create({"Name": "Initech", "External_Id__c": "INITECH-1"})["id"]
    for subject, priority in [("alpha outage", "Low"), ("beta outage", "High"), ("gamma question", "Medium")]:
        sf.Case.create({"Subject": subject, "Priority": priority, "AccountId": acct})
    result = sf.query(f"SELECT Id, Subject, Priority, Account.Name FROM Case WHERE AccountId = '{acct}' AND Subject LIKE '%outage' ORDER BY Subject DESC LIMIT 5")
    assert result["done"] is True and result["totalSize"] == 2
    assert [r["Subject"] for r in result["records"]] == ["beta outage", "alpha outage"]
    assert result["records"][0]["Account"]["Name"] == "Initech"

    result = sf.query(f"SELECT Subject FROM Case WHERE AccountId = '{acct}' AND (Priority = 'high' OR Priority IN ('Medium')) ORDER BY Subject")
    assert [r["Subject"] for r in result["records"]] == ["beta outage", "gamma question"]

    assert sf.query(f"SELECT COUNT() FROM Case WHERE Account.External_Id__c = 'INITECH-1'")["totalSize"] == 3

    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Id FROM Case WHERE")
    assert err.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_query_all_pages_through_large_results(sf):
    acct = sf.Account.create({"Name": "Bulk Co"})["id"]
    records = [{"attributes": {"type": "Task"}, "Subject": f"task {n}", "WhatId": acct} for n in range(200)]
    for _ in range(11):
        results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
        assert all(r["success"] for r in results)
    everything = sf.query_all(f"SELECT Id FROM Task WHERE WhatId = '{acct}'")
    assert everything["totalSize"] == 2200 and len(everything["records"]) == 2200


def test_sobject_collections(sf):
    records = [{"attributes": {"type": "Case"}, "Subject": f"bulk {n}"} for n in range(3)]
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": records})
    assert [r["success"] for r in results] == [True, True, True]
    ids = [r["id"] for r in results]

    updates = [{"attributes": {"type": "Case"}, "Id": ids[0], "Priority": "High"}, {"attributes": {"type": "Case"}, "Id": ids[1], "Priority": "Nope"}]
    results = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": True, "records": updates})
    assert results[0]["success"] is False and results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert sf.Case.get(ids[0])["Priority"] == "Medium", "rolled back"

    results = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": updates})
    assert [r["success"] for r in results] == [True, False]
    assert sf.Case.get(ids[0])["Priority"] == "High"

    too_many = {"allOrNone": False, "records": [{"attributes": {"type": "Case"}, "Subject": "x"}] * 201}
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.restful("composite/sobjects", method="POST", json=too_many)
    assert err.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"

    results = sf.restful("composite/sobjects", method="DELETE", params={"ids": ",".join(ids), "allOrNone": "false"})
    assert all(r["success"] for r in results)


def test_limits_and_usage_header(sf):
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] > limits["DailyApiRequests"]["Remaining"] > 0
    sf.query("SELECT Id FROM User LIMIT 1")
    usage = sf.api_usage["api-usage"]
    assert usage.used > 0 and usage.total == limits["DailyApiRequests"]["Max"]


def test_contact_and_task_and_case_comment(sf):
    acct = sf.Account.create({"Name": "Umbrella"})["id"]
    contact = sf.Contact.create({"LastName": "Wesker", "Email": "a.wesker@umbrella.example", "AccountId": acct})["id"]
    assert contact.startswith("003")
    case = sf.Case.create({"Subject": "Lab door stuck", "ContactId": contact, "AccountId": acct})["id"]
    task = sf.Task.create({"Subject": "Call the account team", "WhatId": case, "Priority": "High"})
    assert task["id"].startswith("00T")
    assert sf.Task.get(task["id"])["Status"] == "Not Started"
    comment = sf.CaseComment.create({"ParentId": case, "CommentBody": "Engineer on site", "IsPublished": True})
    assert comment["id"].startswith("00a")
    rows = sf.query(f"SELECT CommentBody FROM CaseComment WHERE ParentId = '{case}'")["records"]
    assert rows[0]["CommentBody"] == "Engineer on site"


def test_entitlement_service_contract_and_asset_on_a_case(sf):
    acct = sf.Account.create({"Name": "Massive Dynamic", "External_Id__c": "MASSIVE-1"})["id"]
    contract = sf.ServiceContract.create({"Name": "Premier 2027", "AccountId": acct, "StartDate": "2027-01-01", "EndDate": "2027-12-31", "Term": 12})
    assert contract["id"].startswith("810")
    assert sf.ServiceContract.get(contract["id"])["ContractNumber"].isdigit(), "an auto-number"
    asset = sf.Asset.create({"Name": "Checkout gateway", "SerialNumber": "GW-0042", "AccountId": acct, "External_Id__c": "cmdb-ci-0042"})["id"]
    assert asset.startswith("02i")
    entitlement = sf.Entitlement.create({"Name": "Premier support", "AccountId": acct, "ServiceContractId": contract["id"], "AssetId": asset, "Type": "Phone Support"})["id"]
    assert entitlement.startswith("550")
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Entitlement.create({"Name": "No account"})
    assert err.value.content[0]["errorCode"] == "REQUIRED_FIELD_MISSING"

    case = sf.Case.create({"Subject": "Gateway drops payments", "AccountId": acct, "EntitlementId": entitlement, "AssetId": asset})["id"]
    row = sf.query(f"SELECT Entitlement.Name, Entitlement.ServiceContract.Name, Asset.External_Id__c FROM Case WHERE Id = '{case}'")["records"][0]
    assert row["Entitlement"]["Name"] == "Premier support"
    assert row["Entitlement"]["ServiceContract"]["Name"] == "Premier 2027", "two relationships up"
    assert row["Entitlement"]["ServiceContract"]["attributes"]["type"] == "ServiceContract"
    by_contract = sf.query(f"SELECT Id FROM Case WHERE Entitlement.ServiceContract.Name = 'Premier 2027' AND Id = '{case}'")
    assert by_contract["totalSize"] == 1
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Entitlement.ServiceContract.Nope FROM Case")
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert row["Asset"]["External_Id__c"] == "cmdb-ci-0042"


def test_files_shared_with_a_case_in_versions(sf):
    case = sf.Case.create({"Subject": "Checkout fails; HAR attached"})["id"]
    first = b"GET /checkout 502\n"
    version = sf.ContentVersion.create({"PathOnClient": "checkout.har", "VersionData": base64.b64encode(first).decode(), "FirstPublishLocationId": case})["id"]
    assert version.startswith("068")
    row = sf.ContentVersion.get(version)
    assert (row["Title"], row["FileExtension"], row["ContentSize"], row["IsLatest"], row["VersionNumber"]) == ("checkout", "har", len(first), True, "1")
    assert row["Checksum"] == hashlib.md5(first).hexdigest()
    assert row["VersionData"] == f"/services/data/v{sf.sf_version}/sobjects/ContentVersion/{version}/VersionData", "a path, not the content"
    assert sf.ContentVersion.get_base64(version, base64_field="VersionData") == first

    links = sf.query(f"SELECT ContentDocumentId, ShareType, Visibility FROM ContentDocumentLink WHERE LinkedEntityId = '{case}'")["records"]
    assert [(l["ContentDocumentId"], l["ShareType"], l["Visibility"]) for l in links] == [(row["ContentDocumentId"], "V", "AllUsers")]
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Id FROM ContentDocumentLink")
    assert "requires a filter by a single Id on ContentDocumentId or LinkedEntityId" in err.value.content[0]["message"]

    # A new version of the same document, sent as multipart/form-data (the REST API's way for large files).
    second = b"GET /checkout 200\n"
    fields = {"ContentDocumentId": row["ContentDocumentId"], "PathOnClient": "checkout.har", "ReasonForChange": "after the fix"}
    r = requests.post(f"{sf.base_url}sobjects/ContentVersion/", headers={"Authorization": f"Bearer {sf.session_id}"}, files={
        "entity_content": (None, json.dumps(fields), "application/json"),
        "VersionData": ("checkout.har", second, "application/octet-stream"),
    })
    assert r.status_code == 201 and r.json()["success"] is True, r.text
    newer = sf.ContentVersion.get(r.json()["id"])
    assert (newer["VersionNumber"], newer["IsLatest"], newer["ContentSize"]) == ("2", True, len(second))
    assert sf.ContentVersion.get(version)["IsLatest"] is False
    document = sf.ContentDocument.get(row["ContentDocumentId"])
    assert document["LatestPublishedVersionId"] == newer["Id"]
    assert sf.ContentVersion.get_base64(newer["Id"], base64_field="VersionData") == second

    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.ContentVersion.update(version, {"PathOnClient": "other.har"})
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
