"""The dashboard in headless Chromium (Debian's chromium through playwright-core), against `seam serve --sim`:
links with their sync state, the dead-letter queue and its re-drive button, packs, and a record's audit trail.
Then the same story from the command line: `seam audit why`."""
import json
import os
import pathlib
import shutil
import subprocess
import time

import pytest
import requests

from conftest import ROOT, SEAM
from test_engine_restart import clients, free_ports, serving

CHECK = ROOT / "tests" / "dashboard" / "check.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def wait_for(what, probe, timeout=30):
    deadline = time.time() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.skipif(not (ROOT / "tests" / "dashboard" / "node_modules" / "playwright-core").exists(), reason="scripts/test installs playwright-core")
def test_dashboard_in_headless_chromium(tmp_path):
    assert shutil.which("node"), "node is needed for the dashboard test (scripts/test checks)"
    assert pathlib.Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)"
    state = tmp_path / "state"
    state.mkdir()
    ports = free_ports(5)
    log = open(tmp_path / "serve.log", "ab")
    with serving(state, ports, log) as info:
        config = json.loads((state / "seam.json").read_text())
        # The operator token is in a file beside the configuration; the admin listener is apart from intake.
        token, listen = open(config["admin"]["operator_token"]["file"]).read().strip(), config["admin"]["listen"]
        sf, _ = clients(info)
        healthy = sf.Case.create({"Subject": "Dashboard healthy", "Priority": "High"})["id"]
        broken = sf.Case.create({"Subject": "Dashboard broken", "Priority": "Low"})["id"]
        incident = lambda case: sf.Case.get(case).get("ServiceNow_Incident__c")
        wait_for("both Cases linked", lambda: incident(healthy) and incident(broken))

        # Someone deletes the broken Case's incident; the next Case change cannot be carried across.
        sn = info["servicenow"]
        gone = incident(broken)
        r = requests.delete(f"{sn['url']}/api/now/table/incident/{gone}", auth=(sn["username"], sn["password"]))
        assert r.status_code == 204, r.text
        sf.Case.update(broken, {"Subject": "Dashboard broken, edited"})
        admin = lambda path: requests.get(f"http://{listen}{path}", headers={"Authorization": f"Bearer {token}"}).json()
        wait_for("a dead letter", lambda: admin("/admin/api/overview")["tenants"][0]["backlog"]["dead"] == 1)

        shot = ROOT / "target" / "dashboard.png"
        run = subprocess.run(["node", CHECK, f"http://{listen}/dashboard", token, healthy, broken, shot], capture_output=True, text=True, timeout=180, env={**os.environ, "CHROMIUM": CHROMIUM})
        print(run.stdout)
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
        assert shot.exists()

        # Six months on, from the command line: why did the incident's urgency change, and what became of the failed event?
        why = subprocess.run([SEAM, "audit", "why", "servicenow", "incident", incident(healthy), "urgency", "--journal", state / "journal.db"], capture_output=True, text=True, timeout=30)
        assert why.returncode == 0, why.stderr
        assert '— → "2"' in why.stdout and "case-incident@1.0.0" in why.stdout and "salesforce Case" in why.stdout, why.stdout
        failed = subprocess.run([SEAM, "audit", "why", "salesforce", "Case", broken, "Subject", "--journal", state / "journal.db", "--json"], capture_output=True, text=True, timeout=30)
        assert failed.returncode == 0, failed.stderr
        story = json.loads(failed.stdout)["unfinished"]
        assert story and any(what == "re-driven" and detail == "by dashboard" for _, what, detail in story[0]["history"]), story
        assert [what for _, what, _ in story[0]["history"]].count("dead-lettered") >= 1

        # /metrics is scrapeable beside it.
        metrics = requests.get(f"http://{listen}/metrics").text
        assert 'seam_dead_letters{tenant="demo"}' in metrics and "# EOF" in metrics

        # The intake secrets are random, kept in files (0600) the configuration names; the output says where
        # the operator token is, and no secret of seam's appears in it.
        intake = config["tenants"]["demo"]["intake"]
        secrets = [token] + [open(intake[k]["file"]).read().strip() for k in ("salesforce_token", "servicenow_secret")]
        assert all(len(s) >= 32 for s in secrets) and len(set(secrets)) == 3, "random, one per use"
        assert all(oct(os.stat(intake[k]["file"]).st_mode & 0o777) == "0o600" for k in ("salesforce_token", "servicenow_secret"))
        output = open(tmp_path / "serve.log").read()
        assert config["admin"]["operator_token"]["file"] in output, output
        assert not any(s in output for s in secrets), "a secret reached the output"


def test_reconcile_command_reports_and_repairs_drift(tmp_path):
    """`seam reconcile` against a running `seam serve --sim`: a dry run reports, a real run repairs, a second run finds nothing."""
    state = tmp_path / "state"
    state.mkdir()
    ports = free_ports(5)
    log = open(tmp_path / "serve.log", "ab")
    config = state / "seam.json"
    with serving(state, ports, log) as info:
        sf, _ = clients(info)
        case = sf.Case.create({"Subject": "Reconcile me", "Priority": "Medium"})["id"]
        incident = wait_for("the link", lambda: sf.Case.get(case).get("ServiceNow_Incident__c"))
        # An edit ServiceNow never announces (a lost notification): the summary, which Salesforce owns, drifts.
        sn = info["servicenow"]
        assert requests.put(f"{sn['url']}/__admin/faults", json={"drop_notifications_next": 1}).status_code == 200
        r = requests.patch(f"{sn['url']}/api/now/table/incident/{incident}", json={"short_description": "typed over"}, auth=(sn["username"], sn["password"]))
        assert r.status_code == 200, r.text

        dry = subprocess.run([SEAM, "reconcile", "--config", config, "--dry-run"], capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, dry.stderr
        assert "1 linked pair(s): 0 in sync (0 unchanged since the last check), 1 drifted" in dry.stdout, dry.stdout
        assert f'would repair: servicenow incident {incident} short_description: "typed over" → "Reconcile me" (salesforce owns it)' in dry.stdout, dry.stdout

        fixed = subprocess.run([SEAM, "reconcile", "--config", config], capture_output=True, text=True, timeout=60)
        assert fixed.returncode == 0 and "repaired: servicenow incident" in fixed.stdout, fixed.stdout + fixed.stderr
        current = requests.get(f"{sn['url']}/api/now/table/incident/{incident}", auth=(sn["username"], sn["password"])).json()["result"]
        assert current["short_description"] == "Reconcile me"

        time.sleep(1)  # the repair's own notification comes back and is recognised as seam's
        again = subprocess.run([SEAM, "reconcile", "--config", config, "--json"], capture_output=True, text=True, timeout=60)
        report = json.loads(again.stdout)["demo"]
        assert (report["in_sync"], report["drifted"]) == (1, 0), report
        why = subprocess.run([SEAM, "audit", "why", "servicenow", "incident", incident, "short_description", "--journal", state / "journal.db"], capture_output=True, text=True, timeout=30)
        assert '"typed over" → "Reconcile me"  (reconcile: drift repaired from the owner' in why.stdout, why.stdout
