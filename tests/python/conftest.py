"""Starts `seam sim` for the tests and tells them where everything is."""
import json
import os
import pathlib
import signal
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEAM = os.environ.get("SEAM_BIN", str(ROOT / "target" / "release" / "seam"))


class Sim:
    def __init__(self, state, *extra):
        self.state = pathlib.Path(state)
        self.extra = list(extra)
        self.proc = None
        self.info = None

    def start(self):
        info_file = self.state / "sim.json"
        if info_file.exists():
            info_file.unlink()
        log = open(self.state.parent / f"{self.state.name}.log", "ab")
        self.proc = subprocess.Popen([SEAM, "sim", "--state", str(self.state), *self.extra], stdout=log, stderr=log)
        deadline = time.time() + 30
        while not info_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"seam sim exited with {self.proc.returncode}; see {log.name}")
            if time.time() > deadline:
                raise RuntimeError("seam sim did not write sim.json within 30 s")
            time.sleep(0.05)
        time.sleep(0.05)
        self.info = json.loads(info_file.read_text())
        # Every client library here trusts the simulator's CA through these; stop() puts back
        # what was there (another simulator's, for the tests that share one).
        self.previous_env = {k: os.environ.get(k) for k in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
        os.environ["REQUESTS_CA_BUNDLE"] = self.info["ca_pem"]
        os.environ["SSL_CERT_FILE"] = self.info["ca_pem"]
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for key, value in getattr(self, "previous_env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def ports(self):
        """The ports in use, so a restart can come back on the same ones."""
        from urllib.parse import urlparse
        return [
            "--salesforce-port", str(urlparse(self.info["salesforce"]["url"]).port),
            "--servicenow-port", str(urlparse(self.info["servicenow"]["url"]).port),
            "--slack-port", str(urlparse(self.info["slack"]["url"]).port),
            "--pubsub-port", str(urlparse(self.info["salesforce"]["pubsub_url"]).port),
        ]


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    s = Sim(tmp_path_factory.mktemp("sim") / "state").start()
    yield s
    s.stop()


@pytest.fixture
def fresh_sim(tmp_path):
    """A simulator of a test's own, for tests that restart it or inject faults."""
    sims = []

    def make(*extra):
        s = Sim(tmp_path / "state", *extra).start()
        sims.append(s)
        return s

    yield make
    # Last started, first stopped: each puts back the trust the one before it had set.
    for s in reversed(sims):
        s.stop()


def admin(base_url, path, method="GET", body=None):
    """Call an emulator's /__admin endpoint."""
    import requests
    r = requests.request(method, f"{base_url.rstrip('/').removesuffix('/api')}/__admin/{path}", json=body, timeout=10)
    r.raise_for_status()
    return r.json() if r.content else None


def install_update_set(sn, xml_path):
    """Import an update set as the instance's admin does: upload the XML (Retrieved Update
    Sets → Import Update Set from XML), then preview and commit it through the CI/CD API."""
    import re
    import requests
    auth = (sn["admin_username"], sn["admin_password"])
    with open(xml_path, "rb") as f:
        r = requests.post(f"{sn['url']}/sys_upload.do", auth=auth, data={"sysparm_target": "sys_remote_update_set"},
                          files={"attachFile": ("update_set.xml", f, "text/xml")}, allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    set_id = re.search(r"sys_id=([0-9a-f]{32})", r.headers["Location"]).group(1)
    for step in ("preview", "commit"):
        r = requests.post(f"{sn['url']}/api/sn_cicd/update_set/{step}/{set_id}", auth=auth, timeout=10)
        r.raise_for_status()
        progress = r.json()["result"]
        deadline = time.time() + 10
        while progress["status"] in ("0", "1") and time.time() < deadline:
            time.sleep(0.1)
            progress = requests.get(progress["links"]["progress"]["url"], auth=auth, timeout=10).json()["result"]
        assert progress["status"] == "2", f"{step}: {progress}"
    return set_id


def write_update_set(tmp_path, tenant, endpoint, secret, integration_user="seam.integration"):
    """`seam servicenow update-set` for a push rule sending to `endpoint`."""
    secret_file = tmp_path / f"{tenant}-servicenow-secret"
    secret_file.write_text(secret)
    out = tmp_path / f"seam-{tenant}.xml"
    subprocess.run([SEAM, "servicenow", "update-set", "--tenant", tenant, "--endpoint", endpoint, "--secret-file", str(secret_file),
                    "--integration-user", integration_user, "-o", str(out)], check=True, capture_output=True)
    return out
