"""`seam serve --sim` killed with SIGKILL mid-stream and restarted: nothing lost, nothing doubled."""
import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import time

import requests
from pysnc import ServiceNowClient
from simple_salesforce import Salesforce

from conftest import ROOT, SEAM

PACK = os.environ.get("SEAM_PACK", str(ROOT / "target" / "case-incident.seampack"))


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start(state, ports, log):
    (state / "seam.json").unlink(missing_ok=True)
    proc = subprocess.Popen([SEAM, "serve", "--sim", "--state", str(state), "--pack", PACK, "--ports", *map(str, ports)], stdout=log, stderr=log)
    deadline = time.time() + 30
    while True:
        assert proc.poll() is None, f"seam serve exited with {proc.returncode}; see {log.name}"
        assert time.time() < deadline, "seam serve did not start within 30 s"
        if (state / "seam.json").exists():
            try:
                requests.get(f"http://127.0.0.1:{ports[0]}/", timeout=1)
                break
            except requests.ConnectionError:
                pass
        time.sleep(0.05)
    info = json.loads((state / "sim" / "sim.json").read_text())
    os.environ["REQUESTS_CA_BUNDLE"] = info["ca_pem"]
    return proc, info


@contextlib.contextmanager
def serving(state, ports, log):
    """`seam serve --sim` for the length of a `with` block (yields the emulators' sim.json), then SIGTERM."""
    proc, info = start(state, ports, log)
    try:
        yield info
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def clients(info):
    sf = info["salesforce"]
    token = requests.post(f"{sf['url']}/services/oauth2/token", data={"grant_type": "client_credentials", "client_id": sf["client_id"], "client_secret": sf["client_secret"]}).json()
    sn = info["servicenow"]
    return Salesforce(instance_url=token["instance_url"], session_id=token["access_token"]), ServiceNowClient(sn["url"], (sn["username"], sn["password"]))


def test_kill_9_mid_stream_loses_and_doubles_nothing(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    ports = free_ports(4)
    log = open(tmp_path / "serve.log", "ab")
    proc, info = start(state, ports, log)
    sf, _ = clients(info)
    cases = [sf.Case.create({"Subject": f"crash test {n}", "Priority": "High"})["id"] for n in range(25)]
    proc.send_signal(signal.SIGKILL)  # mid-stream: notifications queued, events journaled, writes in flight
    proc.wait()

    with serving(state, ports, log) as info:
        sf, sn = clients(info)
        cases += [sf.Case.create({"Subject": f"crash test {n}", "Priority": "Low"})["id"] for n in range(25, 40)]
        deadline = time.time() + 60
        while True:
            rows = sf.query_all("SELECT Id, ServiceNow_Incident__c FROM Case WHERE Subject LIKE 'crash test%'")["records"]
            linked = {r["Id"]: r["ServiceNow_Incident__c"] for r in rows if r["ServiceNow_Incident__c"]}
            if len(linked) == len(cases) or time.time() > deadline:
                break
            time.sleep(0.2)
        assert sorted(linked) == sorted(cases), f"{len(cases) - len(linked)} Case(s) never got an incident"
        for case in cases:
            gr = sn.GlideRecord("incident")
            gr.add_query("correlation_id", case)
            gr.query()
            assert gr.get_row_count() == 1, f"Case {case} has {gr.get_row_count()} incidents"
            assert gr.next() and gr.get_value("sys_id") == linked[case]
