"""The real-org path, walked as a new user walks it, against `seam sim` configured as if it
were a real org and instance: no --sim shortcuts, secrets from the environment, the
emulators' CA only through SSL_CERT_FILE.

seam init → the Salesforce metadata and the ServiceNow update set, installed as the admins
install them → seam doctor → seam serve, and a Case synced both ways. No secret appears in
any line seam printed or logged. Then each piece is taken away in turn, and seam doctor
names it."""
import json
import os
import re
import signal
import socket
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest
import requests
from pysnc import ServiceNowClient
from simple_salesforce import Salesforce

from conftest import ROOT, SEAM, Sim, admin, install_update_set

PACK = os.environ.get("SEAM_PACK", str(ROOT / "target" / "case-incident.seampack"))
WORKFLOW = os.environ.get("SEAM_WORKFLOW", str(ROOT / "target" / "sev1-bridge.seampack"))
METADATA_NS = "{http://soap.sforce.com/2006/04/metadata}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seam(args, env, check=True, timeout=120):
    result = subprocess.run([SEAM, *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"seam {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def start_serve(config, env, log_path, port):
    """`seam serve --config`, once intake answers."""
    log = open(log_path, "w+")
    proc = subprocess.Popen([SEAM, "serve", "--config", str(config)], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def up():
        if proc.poll() is not None:
            pytest.fail(f"seam serve exited {proc.returncode}:\n{open(log_path).read()}")
        try:
            return requests.get(f"http://127.0.0.1:{port}/intake/healthz", timeout=1).ok
        except requests.ConnectionError:
            return False

    wait_for("intake", up)
    return proc, log


def wait_for(what, predicate, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def org(tmp_path):
    """`seam sim` as a stand-in for a real org and instance, and the environment seam runs in."""
    sim = Sim(tmp_path / "sim").start()
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")}
    sn = sim.info["servicenow"]
    env.update({
        # The emulators' CA, only here: the configuration names no ca_pem.
        "SSL_CERT_FILE": sim.info["ca_pem"],
        "SEAM_ACME_SERVICENOW_PASSWORD": sn["password"],
        "SEAM_ACME_SERVICENOW_CLIENT_SECRET": sn["client_secret"],
        "SEAM_ACME_SLACK_TOKEN": sim.info["slack"]["token"],
        "SEAM_LOG": "debug,hyper=debug,reqwest=debug,rustls=debug",
        "NO_COLOR": "1",
    })
    yield sim, env
    sim.stop()


def test_init_doctor_serve_sync_both_ways_with_no_secret_in_any_log(org, tmp_path):
    sim, env = org
    sf, sn = sim.info["salesforce"], sim.info["servicenow"]
    port = free_port()
    config = tmp_path / "seam.json"
    outputs = []

    # 1. seam init, as for a real org: JWT bearer through the login host, OAuth to ServiceNow.
    init = seam(["init", "--config", str(config), "--tenant", "acme",
                 "--salesforce-login-url", sf["login_url"], "--salesforce-flow", "jwt-bearer", "--salesforce-client-id", sf["client_id"],
                 "--salesforce-username", sf["username"], "--salesforce-private-key", sf["private_key"],
                 "--servicenow-url", sn["url"], "--servicenow-flow", "oauth-password", "--servicenow-username", sn["username"],
                 "--servicenow-client-id", sn["client_id"], "--slack", "--slack-api-url", sim.info["slack"]["url"],
                 "--public-url", f"http://127.0.0.1:{port}", "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{free_port()}", "--journal", str(tmp_path / "journal.db"),
                 "--pack", PACK, "--workflow", WORKFLOW, "--salesforce-events", "outbound-messages", "--allow-unsigned"], env)
    outputs.append(init.stdout + init.stderr)
    assert "export SEAM_ACME_SERVICENOW_PASSWORD" in init.stdout
    written = json.loads(config.read_text())
    tenant = written["tenants"]["acme"]
    assert tenant["intake"]["salesforce_org_id"] == sf["organization_id"], "init read the org's id through the login"
    assert tenant["servicenow"]["auth"]["password"] == {"env": "SEAM_ACME_SERVICENOW_PASSWORD"}
    assert "file" in tenant["intake"]["servicenow_secret"] and "file" in written["admin"]["operator_token"]
    assert "ca_pem" not in tenant or tenant["ca_pem"] is None
    made = [open(tenant["intake"][k]["file"]).read() for k in ("salesforce_token", "servicenow_secret")] + [open(written["admin"]["operator_token"]["file"]).read()]
    assert all(secret not in config.read_text() for secret in made + [sn["password"], sn["client_secret"]]), "the configuration holds references only"
    # A second init of the same tenant is refused, and changes nothing.
    again = seam(["init", "--config", str(config), "--tenant", "acme", "--salesforce-login-url", sf["login_url"], "--salesforce-client-id", "x",
                  "--salesforce-username", "x", "--salesforce-private-key", sf["private_key"], "--servicenow-url", sn["url"],
                  "--servicenow-username", "x", "--servicenow-client-id", "x", "--salesforce-org-id", "00D"], env, check=False)
    assert again.returncode != 0 and "--force" in again.stderr and json.loads(config.read_text()) == written

    # 2. The Salesforce admin deploys the metadata; the emulator takes the Outbound Message's URL from it.
    metadata = tmp_path / "salesforce-acme"
    out = seam(["salesforce", "metadata", "--config", str(config), "--tenant", "acme", "--outbound-message", "-o", str(metadata)], env)
    outputs.append(out.stdout + out.stderr)
    converted = subprocess.run(["node", str(ROOT / "tests/salesforce/convert.mjs"), str(metadata), str(tmp_path / "mdapi")], capture_output=True, text=True, timeout=120)
    assert converted.returncode == 0, converted.stdout + converted.stderr
    components = converted.stdout
    for expected in ["CustomField\tCase.ServiceNow_Incident__c", "CustomField\tAccount.External_Id__c", "PlatformEventChannelMember\tChangeEvents_CaseChangeEvent",
                     "PermissionSet\tSeam_Integration", "Workflow\tCase", "Flow\tSeam_acme_Flow"]:
        assert expected in components, components
    package = ET.parse(tmp_path / "mdapi/package.xml")
    types = {t.find(f"{METADATA_NS}name").text: [m.text for m in t.findall(f"{METADATA_NS}members")] for t in package.getroot().findall(f"{METADATA_NS}types")}
    assert types["WorkflowOutboundMessage"] == ["Case.Seam_acme"], types
    assert package.getroot().find(f"{METADATA_NS}version").text == "59.0"
    workflow = ET.parse(metadata / "force-app/main/default/workflows/Case.workflow-meta.xml")
    endpoint = workflow.find(f"{METADATA_NS}outboundMessages/{METADATA_NS}endpointUrl").text
    assert endpoint.startswith(f"http://127.0.0.1:{port}/intake/acme/salesforce/outbound?token=")
    admin(sf["url"], "notify", "PUT", {"url": endpoint})

    # 3. The ServiceNow admin imports and commits the update set.
    update_set = tmp_path / "seam-acme.xml"
    out = seam(["servicenow", "update-set", "--config", str(config), "--tenant", "acme", "-o", str(update_set)], env)
    outputs.append(out.stdout + out.stderr)
    assert oct(update_set.stat().st_mode & 0o777) == "0o600", "the file holds the intake secret"
    install_update_set(sn, update_set)

    # 4. seam doctor: every check passes (intake is checked with a listener of the doctor's own).
    doctor = seam(["doctor", "--config", str(config)], env)
    outputs.append(doctor.stdout + doctor.stderr)
    assert "✗" not in doctor.stdout and "all checks passed" in doctor.stdout, doctor.stdout
    for check in ["secrets", "DNS", "TLS", "Salesforce login", "Salesforce API version", "Salesforce fields", "intake reachable",
                  "ServiceNow login", "ServiceNow field", "ServiceNow business rule", "ServiceNow deletes", "Slack"]:
        assert f"✓ {check}:" in doctor.stdout, f"{check}: {doctor.stdout}"

    # 5. seam serve, and a Case synced both ways.
    serve, log = start_serve(config, env, tmp_path / "serve.log", port)
    try:
        jane = Salesforce(username="jane.agent@acme.example", consumer_key=sf["client_id"], privatekey_file=sf["private_key"],
                          domain="login", instance_url=sf["url"].removeprefix("https://") + "/services/oauth2/token#")
        case_id = jane.Case.create({"Subject": "Checkout API returns 502", "Priority": "High"})["id"]
        incident = wait_for("the incident", lambda: jane.Case.get(case_id).get("ServiceNow_Incident__c"))
        beth = ServiceNowClient(sn["url"], ("beth.anglin", "beth-password"))
        gr = beth.GlideRecord("incident")
        assert gr.get(incident) and gr.get_value("short_description") == "Checkout API returns 502"
        assert gr.get_value("correlation_id") == case_id
        gr.state = 2
        gr.update()
        wait_for("the Case to follow the incident", lambda: jane.Case.get(case_id)["Status"] == "Working")
    finally:
        serve.terminate()
        serve.wait(timeout=20)
    log.seek(0)
    outputs.append(log.read())

    # 6. No secret in any line seam printed or logged.
    key_lines = [l for l in open(sf["private_key"]).read().splitlines() if l and not l.startswith("-----")]
    secrets = made + [sn["password"], sn["client_secret"], sim.info["slack"]["token"]] + key_lines
    everything = "\n".join(outputs)
    assert "DEBUG" in everything, "the logs were at debug level"
    for secret in secrets:
        assert secret not in everything, f"a secret reached the output: {secret[:6]}…"
    # Access tokens either system issued are secrets too.
    assert not re.search(r"00D5g000004SEAMEAW![0-9a-f]{48}", everything), "a Salesforce session id reached the output"


def set_up(sim, env, tmp_path, port, events=("--salesforce-events", "outbound-messages")):
    """`seam init` for tenant acme (no Slack), and its update set committed in the instance."""
    sf, sn = sim.info["salesforce"], sim.info["servicenow"]
    config = tmp_path / "seam.json"
    seam(["init", "--config", str(config), "--tenant", "acme", "--salesforce-login-url", sf["login_url"], "--salesforce-client-id", sf["client_id"],
          "--salesforce-username", sf["username"], "--salesforce-private-key", sf["private_key"], "--salesforce-org-id", sf["organization_id"],
          "--servicenow-url", sn["url"], "--servicenow-username", sn["username"], "--servicenow-client-id", sn["client_id"],
          "--public-url", f"http://127.0.0.1:{port}", "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{free_port()}", "--pack", PACK, "--allow-unsigned", *events], env)
    update_set = tmp_path / "seam-acme.xml"
    seam(["servicenow", "update-set", "--config", str(config), "--tenant", "acme", "-o", str(update_set)], env)
    install_update_set(sn, update_set)
    return config


def doctor_fails(env, config, check, *words):
    doctor = seam(["doctor", "--config", str(config)], env, check=False)
    assert doctor.returncode != 0, doctor.stdout
    line = next((l for l in doctor.stdout.splitlines() if l.strip().startswith(f"✗ {check}:")), None)
    assert line, f"no ✗ for {check}:\n{doctor.stdout}"
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    assert "next:" in doctor.stdout
    return doctor.stdout


def test_doctor_names_each_missing_piece(org, tmp_path):
    sim, env = org
    sf, sn = sim.info["salesforce"], sim.info["servicenow"]
    config = set_up(sim, env, tmp_path, free_port())
    assert "all checks passed" in seam(["doctor", "--config", str(config)], env).stdout

    sn_admin = (sn["admin_username"], sn["admin_password"])
    # A secret file others can read is named, with the fix.
    token_file = json.loads(config.read_text())["tenants"]["acme"]["intake"]["servicenow_secret"]["file"]
    os.chmod(token_file, 0o644)
    warned = seam(["doctor", "--config", str(config)], env)
    assert "other users can read" in warned.stderr and f"chmod 600 {token_file}" in warned.stderr, warned.stderr
    os.chmod(token_file, 0o600)
    # A wrong secret.
    wrong = {**env, "SEAM_ACME_SERVICENOW_PASSWORD": "not-it"}
    doctor_fails(wrong, config, "ServiceNow login", "401")
    # A secret that is not there at all.
    unset = {k: v for k, v in env.items() if k != "SEAM_ACME_SERVICENOW_CLIENT_SECRET"}
    doctor_fails(unset, config, "secrets", "SEAM_ACME_SERVICENOW_CLIENT_SECRET")
    # The business rule switched off.
    rule = requests.get(f"{sn['url']}/api/now/table/sys_script", params={"sysparm_query": "name=seam push (acme)"}, auth=sn_admin).json()["result"][0]
    requests.patch(f"{sn['url']}/api/now/table/sys_script/{rule['sys_id']}", json={"active": "false"}, auth=sn_admin).raise_for_status()
    doctor_fails(env, config, "ServiceNow business rule", "inactive")
    requests.patch(f"{sn['url']}/api/now/table/sys_script/{rule['sys_id']}", json={"active": "true"}, auth=sn_admin).raise_for_status()
    # The company key field deleted.
    field = requests.get(f"{sn['url']}/api/now/table/sys_dictionary", params={"sysparm_query": "name=core_company^element=u_sf_external_id"}, auth=sn_admin).json()["result"][0]
    requests.delete(f"{sn['url']}/api/now/table/sys_dictionary/{field['sys_id']}", auth=sn_admin).raise_for_status()
    doctor_fails(env, config, "ServiceNow field", "u_sf_external_id")
    # A Salesforce field deleted.
    admin(sf["url"], "schema", "PUT", {"removed": ["Case.ServiceNow_Number__c"]})
    doctor_fails(env, config, "Salesforce fields", "Case.ServiceNow_Number__c")
    # An instance that does not answer.
    broken = json.loads(config.read_text())
    broken["tenants"]["acme"]["servicenow"]["instance_url"] = f"https://127.0.0.1:{free_port()}"
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    doctor_fails(env, tmp_path / "broken.json", "TLS", "ServiceNow")
    # A wrong My Domain for the client credentials flow: the login host refuses it, and the fix is named.
    cc = json.loads(config.read_text())
    cc["tenants"]["acme"]["salesforce"]["auth"] = {"flow": "client_credentials", "client_id": sf["client_id"], "client_secret": {"env": "SEAM_ACME_SF_CC"}}
    (tmp_path / "cc.json").write_text(json.dumps(cc))
    doctor_fails({**env, "SEAM_ACME_SF_CC": sf["client_secret"]}, tmp_path / "cc.json", "Salesforce login", "request not supported on this domain", "my.salesforce.com")


def test_a_pubsub_tenant_is_checked_and_synced_from_the_orgs_change_events(org, tmp_path):
    """seam init's default: Salesforce's changes over the Pub/Sub API, the CA only through SSL_CERT_FILE."""
    sim, env = org
    sf, sn = sim.info["salesforce"], sim.info["servicenow"]
    port = free_port()
    config = set_up(sim, env, tmp_path, port, events=("--pubsub-url", sf["pubsub_url"]))
    assert json.loads(config.read_text())["tenants"]["acme"]["events"] == "pubsub"
    doctor = seam(["doctor", "--config", str(config)], env)
    assert "✓ Salesforce change events: /data/CaseChangeEvent" in doctor.stdout, doctor.stdout
    # The org sends no Outbound Message: its Case changes reach seam only as change events.
    serve, log = start_serve(config, env, tmp_path / "serve.log", port)
    try:
        jane = Salesforce(username="jane.agent@acme.example", consumer_key=sf["client_id"], privatekey_file=sf["private_key"],
                          domain="login", instance_url=sf["url"].removeprefix("https://") + "/services/oauth2/token#")
        wait_for("the subscription", lambda: "subscribed to Salesforce change events" in open(tmp_path / "serve.log").read())
        case_id = jane.Case.create({"Subject": "Printer on fire", "Priority": "High"})["id"]
        incident = wait_for("the incident", lambda: jane.Case.get(case_id).get("ServiceNow_Incident__c"))
        jane.Case.update(case_id, {"Priority": "Critical"})
        beth = ServiceNowClient(sn["url"], ("beth.anglin", "beth-password"))
        gr = beth.GlideRecord("incident")
        wait_for("the incident to follow the Case", lambda: gr.get(incident) and gr.get_value("urgency") == "1")
    finally:
        serve.terminate()
        serve.wait(timeout=20)
    # A Pub/Sub endpoint that does not answer is named, with the next step.
    broken = json.loads(config.read_text())
    broken["tenants"]["acme"]["pubsub"]["url"] = f"https://127.0.0.1:{free_port()}"
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    doctor_fails(env, tmp_path / "broken.json", "Salesforce change events", "127.0.0.1")


def test_backfill_asks_first_stops_on_ctrl_c_and_goes_on_where_it_stopped(org, tmp_path):
    sim, env = org
    sf = sim.info["salesforce"]
    port = free_port()
    config = set_up(sim, env, tmp_path, port)
    jane = Salesforce(username="jane.agent@acme.example", consumer_key=sf["client_id"], privatekey_file=sf["private_key"],
                      domain="login", instance_url=sf["url"].removeprefix("https://") + "/services/oauth2/token#")
    # History: 250 Cases from before seam (two collection calls).
    old = []
    for start in (0, 200):
        records = [{"attributes": {"type": "Case"}, "Subject": f"history {n}", "Priority": "Low"} for n in range(start, min(start + 200, 250))]
        old += [r["id"] for r in jane.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})]
    since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    backfill = ["backfill", "--config", str(config), "--tenant", "acme", "--since", since]

    # Without a terminal to ask at, it says what it would do and asks for --yes.
    refused = seam(backfill, env, check=False)
    assert refused.returncode != 0 and "--yes" in refused.stderr and "250 Case(s)" in refused.stdout, refused.stdout + refused.stderr
    assert re.search(r"about \d+ Salesforce and \d+ ServiceNow API calls", refused.stdout), refused.stdout
    assert "API requests today" in refused.stdout

    # seam serve is not running: the first page fills the backlog and the backfill waits; Ctrl-C stops it there.
    proc = subprocess.Popen([SEAM, *backfill, "--yes", "--window", "10"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Interrupted after 200 Case(s)" in out, out + err

    serve, _ = start_serve(config, env, tmp_path / "serve.log", port)
    try:
        again = seam([*backfill, "--yes"], env)
        assert "An earlier run brought in 200; 50 are left." in again.stdout and "All 250 Case(s) are journaled" in again.stdout, again.stdout
        wait_for("the history synced", lambda: jane.query("SELECT COUNT() FROM Case WHERE ServiceNow_Incident__c = null")["totalSize"] == 0, timeout=60)
        assert "Nothing to do" in seam([*backfill, "--yes"], env).stdout
    finally:
        serve.terminate()
        serve.wait(timeout=20)
