"""Change notifications pushed and retried until acknowledged; fault injection; state that survives a restart."""
import base64
import hashlib
import hmac
import json
import threading
import time
import xml.dom.minidom
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from pysnc import ServiceNowClient
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceRefusedRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from conftest import admin, install_update_set, write_update_set

ACK = b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>'


class Receiver:
    """A stand-in for the engine's intake: records every delivery, refuses the first `refuse` of them."""

    def __init__(self, refuse=0, port=0):
        self.deliveries = []
        self.refuse = refuse
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if receiver.refuse > 0:
                    receiver.refuse -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.end_headers()
                self.wfile.write(ACK)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/intake"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count, timeout=15):
        deadline = time.time() + timeout
        while len(self.deliveries) < count and time.time() < deadline:
            time.sleep(0.02)
        assert len(self.deliveries) >= count, f"expected {count} deliveries, got {len(self.deliveries)}"
        return self.deliveries

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def salesforce(sim):
    sf = sim.info["salesforce"]
    r = requests.post(f"{sf['url']}/services/oauth2/token", data={"grant_type": "client_credentials", "client_id": sf["client_id"], "client_secret": sf["client_secret"]})
    return Salesforce(instance_url=r.json()["instance_url"], session_id=r.json()["access_token"])


def servicenow(sim, auto_retry=True):
    sn = sim.info["servicenow"]
    return ServiceNowClient(sn["url"], (sn["username"], sn["password"]), auto_retry=auto_retry)


def soap_notifications(body):
    dom = xml.dom.minidom.parseString(body)
    out = []
    for n in dom.getElementsByTagName("Notification"):
        fields = {}
        for node in n.getElementsByTagName("sObject")[0].childNodes:
            if node.nodeType == node.ELEMENT_NODE:
                fields[node.localName] = node.firstChild.data if node.firstChild else None
        out.append((n.getElementsByTagName("Id")[0].firstChild.data, fields))
    return out


def test_outbound_messages_are_retried_until_acknowledged(fresh_sim):
    sim = fresh_sim()
    receiver = Receiver(refuse=2)
    try:
        admin(sim.info["salesforce"]["url"], "notify", "PUT", {"url": receiver.url})
        case_id = salesforce(sim).Case.create({"Subject": "Checkout API returns 502", "Priority": "High"})["id"]
        deliveries = receiver.wait_for(3)
        time.sleep(0.5)
        assert len(receiver.deliveries) == 3, "refused twice, acknowledged on the third try, then no more"
        headers, body = deliveries[-1]
        assert headers["content-type"].startswith("text/xml") and "soapaction" in headers
        dom = xml.dom.minidom.parseString(body)
        assert dom.getElementsByTagName("OrganizationId")[0].firstChild.data == sim.info["salesforce"]["organization_id"]
        [(notification_id, fields)] = soap_notifications(body)
        assert notification_id.startswith("04l")
        assert fields["Id"] == case_id and fields["Subject"] == "Checkout API returns 502" and fields["Status"] == "New"
        assert {d[1] for d in deliveries} == {body}, "a retry resends the same notification"
        stats = admin(sim.info["salesforce"]["url"], "stats")["notifications"]
        assert stats["pending"] == 0 and stats["delivered"] == 1 and stats["failed_attempts"] == 2
    finally:
        receiver.close()


def test_servicenow_sends_through_seams_update_set_once_its_admin_commits_it(fresh_sim, tmp_path):
    sim = fresh_sim()
    sn = sim.info["servicenow"]
    receiver = Receiver()
    try:
        person = ServiceNowClient(sn["url"], ("beth.anglin", "beth-password"))
        # Nothing is sent before the update set is installed.
        gr = person.GlideRecord("incident")
        gr.initialize()
        gr.short_description = "before seam"
        gr.insert()
        # Only an admin imports update sets.
        xml = write_update_set(tmp_path, "demo", receiver.url, "s3cret")
        r = requests.post(f"{sn['url']}/sys_upload.do", auth=(sn["username"], sn["password"]), data={"sysparm_target": "sys_remote_update_set"},
                          files={"attachFile": ("u.xml", xml.read_bytes(), "text/xml")}, allow_redirects=False)
        assert r.status_code == 403
        install_update_set(sn, xml)
        rules = requests.get(f"{sn['url']}/api/now/table/sys_script", params={"sysparm_query": "collection=incident^active=true"}, auth=(sn["username"], sn["password"])).json()["result"]
        assert [r["name"] for r in rules] == ["seam push (demo)"] and rules[0]["when"] == "async"
        time.sleep(0.3)
        assert receiver.deliveries == [], "the change made before the rule existed is not sent"

        gr = person.GlideRecord("incident")
        gr.initialize()
        gr.short_description = "Checkout API returns 502"
        gr.correlation_id = "5005g00000ABCDeAAF"
        sys_id = str(gr.insert())
        gr.state = 2
        gr.assigned_to = "Beth Anglin"
        gr.work_notes = "checking the gateway"
        gr.update()
        deliveries = receiver.wait_for(2)
        events = []
        for headers, body in deliveries:
            # Signed with the time it was sent, inside the MAC: intake refuses one older than 5 minutes.
            stamp = headers["x-seam-timestamp"]
            assert abs(int(stamp) - time.time()) < 60
            expected = "sha256=" + base64.b64encode(hmac.new(b"s3cret", stamp.encode() + b"." + body, hashlib.sha256).digest()).decode()
            assert headers["x-seam-signature"] == expected
            events.append(json.loads(body))
        insert, update = events
        # The async rule reads the record when its job runs: each carries the record whole, as it was then.
        assert insert["operation"] == "insert" and insert["sys_id"] == sys_id and insert["current"]["correlation_id"] == "5005g00000ABCDeAAF"
        assert update["operation"] == "update" and update["event_id"] == f"{sys_id}:1:update" and update["current"]["state"] == "2"
        assert update["display_values"]["assigned_to"] == "Beth Anglin" and update["user"] == "beth.anglin"
        assert update["journal"] == {"work_notes": "checking the gateway"}
        assert list(update) == sorted(update) and list(update["current"]) == sorted(update["current"]), "keys sorted, as the rule writes them"

        # seam's own writes (the integration user's) are not sent back.
        seam = ServiceNowClient(sn["url"], (sn["username"], sn["password"]))
        gr = seam.GlideRecord("incident")
        gr.get(sys_id)
        gr.short_description = "written by seam"
        gr.update()
        time.sleep(0.5)
        assert len(receiver.deliveries) == 2
    finally:
        receiver.close()


def test_dropped_notifications_fault(fresh_sim):
    sim = fresh_sim()
    receiver = Receiver()
    try:
        url = sim.info["salesforce"]["url"]
        admin(url, "notify", "PUT", {"url": receiver.url})
        admin(url, "faults", "PUT", {"drop_notifications_next": 1})
        sf = salesforce(sim)
        sf.Case.create({"Subject": "never announced"})
        sf.Case.create({"Subject": "announced"})
        receiver.wait_for(1)
        time.sleep(0.3)
        assert [f["Subject"] for _, body in receiver.deliveries for _, f in soap_notifications(body)] == ["announced"]
        assert admin(url, "stats")["notifications"]["dropped"] == 1
    finally:
        receiver.close()


def test_rate_limits_server_errors_and_latency(fresh_sim):
    sim = fresh_sim("--fault", "servicenow.rate_limit_next=2", "--fault", "slack.rate_limit_next=1")
    sf = salesforce(sim)
    admin(sim.info["salesforce"]["url"], "faults", "PUT", {"rate_limit_next": 1, "retry_after_secs": 1})
    with pytest.raises(SalesforceRefusedRequest) as err:
        sf.query("SELECT Id FROM User")
    assert err.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] >= 1, "the next request goes through"

    # pysnc retries 429 by itself (backoff), so two refusals converge.
    gr = servicenow(sim).GlideRecord("sys_user")
    gr.add_query("user_name", "beth.anglin")
    gr.query()
    assert gr.get_row_count() == 1

    slack = WebClient(token=sim.info["slack"]["token"], base_url=sim.info["slack"]["url"])
    with pytest.raises(SlackApiError) as err:
        slack.auth_test()
    assert err.value.response.status_code == 429 and err.value.response["error"] == "ratelimited"
    assert err.value.response.headers["Retry-After"] == "1"

    admin(sim.info["salesforce"]["url"], "faults", "PUT", {"server_error_next": 1})
    with pytest.raises(SalesforceGeneralError) as err:
        sf.query("SELECT Id FROM User")
    assert err.value.status == 503

    admin(sim.info["slack"]["url"], "faults", "PUT", {"latency_ms": 300})
    started = time.time()
    slack.auth_test()
    assert time.time() - started >= 0.3
    admin(sim.info["slack"]["url"], "faults", "PUT", {})

    r = requests.put(sim.info["salesforce"]["url"] + "/__admin/faults", json={"rate_limt": 1})
    assert r.status_code == 400 and "rate_limt" in r.json()["error"]


def test_state_and_pending_notifications_survive_a_restart(fresh_sim, tmp_path):
    receiver = Receiver()
    port = receiver.server.server_port
    receiver.close()  # nobody listening yet: deliveries fail and stay queued

    sim = fresh_sim("--notify", f"salesforce=http://127.0.0.1:{port}/intake")
    sf = salesforce(sim)
    case_id = sf.Case.create({"Subject": "survives"})["id"]
    gr = servicenow(sim).GlideRecord("incident")
    gr.initialize()
    gr.short_description = "also survives"
    inc = str(gr.insert())
    WebClient(token=sim.info["slack"]["token"], base_url=sim.info["slack"]["url"]).conversations_create(name="kept-channel")
    time.sleep(0.3)
    ports = sim.ports()
    sim.stop()

    receiver = Receiver(port=port)
    try:
        again = fresh_sim(*ports)
        sf = salesforce(again)
        assert sf.Case.get(case_id)["Subject"] == "survives"
        gr = servicenow(again).GlideRecord("incident")
        assert gr.get(inc) and gr.get_value("short_description") == "also survives"
        slack = WebClient(token=again.info["slack"]["token"], base_url=again.info["slack"]["url"])
        assert "kept-channel" in [c["name"] for c in slack.conversations_list()["channels"]]
        # The notification queued before the restart is delivered after it.
        receiver.wait_for(1)
        assert [f["Id"] for _, f in soap_notifications(receiver.deliveries[0][1])] == [case_id]
        # New ids do not collide with the old ones.
        assert sf.Case.create({"Subject": "after restart"})["id"] != case_id
    finally:
        receiver.close()


def test_servicenow_has_no_notification_target_but_its_business_rules(sim):
    r = requests.put(sim.info["servicenow"]["url"] + "/__admin/notify", json={"url": "http://127.0.0.1:9/x"})
    assert r.status_code == 400 and "update set" in r.json()["error"]
