"""pysnc, unchanged, against the ServiceNow emulator."""
import re

import pytest
import requests
from pysnc import ServiceNowClient
from pysnc.exceptions import AuthenticationException, RoleException


@pytest.fixture(scope="module")
def client(sim):
    sn = sim.info["servicenow"]
    return ServiceNowClient(sn["url"], (sn["username"], sn["password"]))


def test_wrong_password_is_refused(sim):
    bad = ServiceNowClient(sim.info["servicenow"]["url"], (sim.info["servicenow"]["username"], "wrong"))
    gr = bad.GlideRecord("incident")
    with pytest.raises(AuthenticationException):
        gr.get("0" * 32)


def test_insert_get_update_an_incident(client):
    gr = client.GlideRecord("incident")
    gr.initialize()
    gr.short_description = "Checkout API returns 502"
    gr.description = "Every third call fails"
    gr.impact = 1
    gr.urgency = 2
    gr.correlation_id = "5005g00000ABCDeAAF"
    sys_id = gr.insert()
    assert re.fullmatch(r"[0-9a-f]{32}", str(sys_id))
    assert re.fullmatch(r"INC\d{7}", gr.get_value("number"))
    assert gr.get_value("priority") == "2", "impact 1 × urgency 2 = P2"
    assert gr.get_display_value("priority") == "2 - High"
    assert gr.get_value("state") == "1" and gr.get_display_value("state") == "New"

    again = client.GlideRecord("incident")
    assert again.get(str(sys_id))
    assert again.get_value("short_description") == "Checkout API returns 502"
    assert again.get_value("sys_mod_count") == "0"
    created_on = again.get_value("sys_updated_on")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", created_on)

    again.state = 2
    again.assigned_to = "Beth Anglin"  # a display value resolves to the user's sys_id
    again.work_notes = "Looking at the gateway logs"
    again.update()
    assert again.get_value("sys_mod_count") == "1"
    assert again.get_display_value("assigned_to") == "Beth Anglin"
    assert re.fullmatch(r"[0-9a-f]{32}", again.get_value("assigned_to"))
    assert "Looking at the gateway logs" in again.get_display_value("work_notes")
    assert again.get_value("work_notes") == "", "journal fields read back empty; the text lives in the journal"

    journal = client.GlideRecord("sys_journal_field")
    journal.add_query("element_id", str(sys_id))
    journal.add_query("element", "work_notes")
    journal.query()
    assert [j.get_value("value") for j in journal] == ["Looking at the gateway logs"]


def test_resolving_without_notes_breaks_the_data_policy(client):
    gr = client.GlideRecord("incident")
    gr.initialize()
    gr.short_description = "will resolve"
    gr.insert()
    gr.state = 6
    # A data-policy refusal is a 403, which pysnc reports as RoleException.
    with pytest.raises(RoleException) as err:
        gr.update()
    assert "Data Policy Exception" in str(err.value)
    gr.close_code = "Solved (Permanently)"
    gr.close_notes = "Rolled back the config"
    gr.update()
    assert gr.get_value("state") == "6" and gr.get_value("active") == "false" and gr.get_value("resolved_at")


def test_encoded_queries_limits_and_total_count(client):
    for n in range(5):
        gr = client.GlideRecord("incident")
        gr.initialize()
        gr.short_description = f"query probe {n}"
        gr.category = "probe"
        gr.impact = 1 if n % 2 else 3
        gr.urgency = 1
        gr.insert()

    gr = client.GlideRecord("incident", batch_size=2)
    gr.add_query("category", "probe")
    gr.add_query("impact", "1")
    gr.order_by("short_description")
    gr.query()
    assert gr.get_row_count() == 2
    assert [r.get_value("short_description") for r in gr] == ["query probe 1", "query probe 3"]

    gr = client.GlideRecord("incident", batch_size=2)
    gr.add_encoded_query("category=probe^short_descriptionLIKEprobe^ORDERBYDESCshort_description")
    gr.query()
    assert [r.get_value("short_description") for r in gr] == [f"query probe {n}" for n in (4, 3, 2, 1, 0)], "paged in batches of 2"

    gr = client.GlideRecord("incident")
    q = gr.add_query("short_description", "query probe 0")
    q.add_or_condition("short_description", "query probe 4")
    gr.query()
    assert sorted(r.get_value("short_description") for r in gr) == ["query probe 0", "query probe 4"]


def test_table_api_shapes_and_errors(sim):
    sn = sim.info["servicenow"]
    auth = (sn["username"], sn["password"])
    r = requests.get(f"{sn['url']}/api/now/table/incident", params={"sysparm_limit": 1, "sysparm_fields": "number,assigned_to"}, auth=auth)
    assert r.status_code == 200 and "X-Total-Count" in r.headers and 'rel="first"' in r.headers["Link"]
    assert set(r.json()["result"][0]) == {"number", "assigned_to"}

    r = requests.get(f"{sn['url']}/api/now/table/no_such_table", auth=auth)
    assert r.status_code == 400 and r.json() == {"error": {"message": "Invalid table no_such_table", "detail": None}, "status": "failure"}

    r = requests.get(f"{sn['url']}/api/now/table/incident/{'0' * 32}", auth=auth)
    assert r.status_code == 404 and r.json()["error"]["message"] == "No Record found" and r.json()["status"] == "failure"

    r = requests.post(f"{sn['url']}/api/now/table/incident", data="{not json", headers={"Content-Type": "application/json"}, auth=auth)
    assert r.status_code == 400 and r.json()["status"] == "failure"

    r = requests.post(f"{sn['url']}/api/now/table/incident", json={"short_description": "raw", "impact": "1", "urgency": "1"}, auth=auth)
    assert r.status_code == 201
    inc = r.json()["result"]
    assert inc["priority"] == "1" and inc["number"].startswith("INC")
    r = requests.delete(f"{sn['url']}/api/now/table/incident/{inc['sys_id']}", auth=auth)
    assert r.status_code == 204


def test_oauth_bearer_token(sim):
    sn = sim.info["servicenow"]
    r = requests.post(f"{sn['url']}/oauth_token.do", data={"grant_type": "password", "client_id": sn["client_id"], "client_secret": sn["client_secret"], "username": sn["username"], "password": sn["password"]})
    body = r.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "useraccount" and body["expires_in"] == 1799 and body["refresh_token"]
    r = requests.get(f"{sn['url']}/api/now/table/sys_user", params={"sysparm_query": "user_name=beth.anglin"}, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert r.json()["result"][0]["name"] == "Beth Anglin"
    # The instance refuses every bad grant alike, and JSON bodies are not read at all.
    for bad in [
        {"grant_type": "password", "client_id": "x", "client_secret": "y", "username": sn["username"], "password": sn["password"]},
        {"grant_type": "password", "client_id": sn["client_id"], "client_secret": sn["client_secret"], "username": sn["username"], "password": "wrong"},
        {"grant_type": "refresh_token", "client_id": sn["client_id"], "client_secret": sn["client_secret"], "refresh_token": "not-one"},
    ]:
        r = requests.post(f"{sn['url']}/oauth_token.do", data=bad)
        assert (r.status_code, r.json()) == (401, {"error_description": "access_denied", "error": "server_error"})
    r = requests.post(f"{sn['url']}/oauth_token.do", json={"grant_type": "client_credentials", "client_id": sn["client_id"], "client_secret": sn["client_secret"]})
    assert r.status_code == 401
    r = requests.get(f"{sn['url']}/api/now/table/sys_user", headers={"Authorization": "Bearer expired-or-never-issued"})
    assert r.status_code == 401 and r.json()["error"]["message"] == "User Not Authenticated"


def test_pysnc_oauth_flows(sim):
    """pysnc's own OAuth flows: the password grant (client in a Basic header) and client credentials (client in the body)."""
    from pysnc.auth import ServiceNowClientCredentialsFlow, ServiceNowPasswordGrantFlow
    sn = sim.info["servicenow"]
    for auth in [
        ServiceNowPasswordGrantFlow(sn["username"], sn["password"], sn["client_id"], sn["client_secret"]),
        ServiceNowClientCredentialsFlow(sn["client_id"], sn["client_secret"]),
    ]:
        client = ServiceNowClient(sn["url"], auth)
        gr = client.GlideRecord("sys_user")
        gr.add_query("user_name", "beth.anglin")
        gr.query()
        assert gr.next() and gr.get_value("name") == "Beth Anglin"


def test_batch_api_update_and_delete_multiple(client):
    for n in range(3):
        gr = client.GlideRecord("incident")
        gr.initialize()
        gr.short_description = f"batch {n}"
        gr.category = "batch"
        gr.insert()
    gr = client.GlideRecord("incident")
    gr.add_query("category", "batch")
    gr.query()
    for r in gr:
        r.urgency = 1
    assert gr.update_multiple()
    check = client.GlideRecord("incident")
    check.add_query("category", "batch")
    check.add_query("urgency", "1")
    check.query()
    assert check.get_row_count() == 3

    gone = client.GlideRecord("incident")
    gone.add_query("category", "batch")
    assert gone.delete_multiple()
    left = client.GlideRecord("incident")
    left.add_query("category", "batch")
    left.query()
    assert left.get_row_count() == 0


def test_attachments(client):
    gr = client.GlideRecord("incident")
    gr.initialize()
    gr.short_description = "with a log file"
    sys_id = gr.insert()
    att = client.Attachment("incident")
    att.add_attachment(str(sys_id), "gateway.log", b"502 at 09:12\n", "text/plain")
    att = client.Attachment("incident")
    att.add_query("table_sys_id", str(sys_id))
    att.query()
    names = [a.file_name for a in att]
    assert names == ["gateway.log"]
    for a in att:
        assert a.read() == b"502 at 09:12\n"


def test_changes_incident_tasks_slas_and_approvals(client):
    """The task tables past the incident, as an instance numbers, defaults and displays them."""
    change = client.GlideRecord("change_request")
    change.initialize()
    change.short_description = "Roll back the gateway config"
    change.start_date = "2026-12-04 22:00:00"
    change.end_date = "2026-12-04 23:00:00"
    change_id = str(change.insert())
    number = change.get_value("number")
    assert re.fullmatch(r"CHG\d{7}", number)
    assert (change.get_value("state"), change.get_display_value("state")) == ("-5", "New")
    assert (change.get_value("type"), change.get_display_value("type")) == ("normal", "Normal")

    # A reference takes a display value: the change's number names it.
    incident = client.GlideRecord("incident")
    incident.initialize()
    incident.short_description = "Checkout down after the config push"
    incident.caused_by = number
    incident_id = str(incident.insert())
    assert incident.get_value("caused_by") == change_id
    assert incident.get_display_value("caused_by") == number

    task = client.GlideRecord("incident_task")
    task.initialize()
    task.incident = incident_id
    task.short_description = "Verify the fix with the customer"
    task_id = str(task.insert())
    assert re.fullmatch(r"TASK\d{7}", task.get_value("number"))
    assert (task.get_value("state"), task.get_display_value("state")) == ("1", "Open")
    assert task.get_display_value("incident") == incident.get_value("number")

    definition = client.GlideRecord("contract_sla")
    definition.initialize()
    definition.name = "P1 resolution"
    definition.collection = "incident"
    definition.target = "resolution"
    sla_definition = str(definition.insert())

    # task_sla.task references `task`: it finds the incident, which extends it.
    sla = client.GlideRecord("task_sla")
    sla.initialize()
    sla.task = incident_id
    sla.sla = sla_definition
    sla.planned_end_time = "2026-12-04 12:00:00"
    sla.insert()
    assert (sla.get_value("stage"), sla.get_display_value("stage")) == ("in_progress", "In progress")
    assert sla.get_value("has_breached") == "false"
    assert sla.get_display_value("task") == incident.get_value("number")
    assert sla.get_display_value("sla") == "P1 resolution"
    sla.stage = "breached"
    sla.has_breached = True
    sla.business_percentage = "112.5"
    sla.update()
    breached = client.GlideRecord("task_sla")
    breached.add_query("task", incident_id)
    breached.add_query("has_breached", "true")
    breached.query()
    assert [(s.get_display_value("stage"), s.get_value("business_percentage")) for s in breached] == [("Breached", "112.5")]

    approval = client.GlideRecord("sysapproval_approver")
    approval.initialize()
    approval.approver = "Beth Anglin"
    approval.sysapproval = change_id
    approval.source_table = "change_request"
    approval.document_id = change_id
    approval.insert()
    assert (approval.get_value("state"), approval.get_display_value("state")) == ("requested", "Requested")
    assert approval.get_display_value("sysapproval") == number
    assert approval.get_display_value("approver") == "Beth Anglin"
    approval.state = "approved"
    approval.comments = "Fine by the account team"
    approval.update()
    assert approval.get_display_value("state") == "Approved"
    assert "Fine by the account team" in approval.get_display_value("comments")

    closing = client.GlideRecord("incident_task")
    assert closing.get(task_id)
    closing.state = 3
    closing.close_notes = "The customer confirmed checkout works"
    closing.update()
    assert (closing.get_value("state"), closing.get_display_value("state")) == ("3", "Closed Complete")
