"""An operator changes a running host's pack: `seam pack install|list|rollback` against `seam serve --sim`."""
import json
import os
import subprocess

from conftest import ROOT, SEAM
from test_engine_restart import free_ports, serving

COMPONENT = ROOT / "target" / "wasm32-wasip2" / "pack" / "case_incident.wasm"
MANIFEST = ROOT / "plugins" / "case-incident" / "pack.json"


def seam(*args):
    return subprocess.run([SEAM, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_install_list_rollback_and_restart(tmp_path):
    manifest = json.loads(MANIFEST.read_text())
    manifest["version"] = "1.2.0"
    (tmp_path / "pack.json").write_text(json.dumps(manifest))
    newer = tmp_path / "case-incident-1.2.0.seampack"
    assert seam("pack", "build", COMPONENT, "--manifest", tmp_path / "pack.json", "-o", newer).returncode == 0

    state = tmp_path / "state"
    state.mkdir()
    ports = free_ports(5)
    log = open(tmp_path / "serve.log", "ab")
    config = state / "seam.json"
    with serving(state, ports, log):
        installed = seam("pack", "install", "demo", newer, "--config", config)
        assert installed.returncode == 0, installed.stderr
        assert "demo now runs case-incident@1.2.0" in installed.stdout

        junk = tmp_path / "junk.seampack"
        junk.write_bytes(b"\0asm junk")
        refused = seam("pack", "install", "demo", junk, "--config", config)
        assert refused.returncode != 0 and "keeps its current pack" in refused.stderr

        listed = seam("pack", "list", "--config", config)
        assert listed.returncode == 0, listed.stderr
        assert "demo: case-incident@1.2.0" in listed.stdout and "from admin" in listed.stdout

        back = seam("pack", "rollback", "demo", "--config", config)
        assert back.returncode == 0 and "case-incident@1.0.0" in back.stdout, back.stderr
        again = seam("pack", "rollback", "demo", "--config", config)
        assert again.returncode != 0 and "no earlier pack" in again.stderr

    # A restart comes back on the pack that was active, with its history.
    with serving(state, ports, log):
        listed = seam("pack", "list", "--config", config)
        assert "demo: case-incident@1.0.0" in listed.stdout, listed.stdout
        assert "(rolled back)" in listed.stdout
        assert seam("pack", "install", "demo", newer, "--config", config).returncode == 0

    # The configured pack is still 1.0.0, but 1.2.0 replaced it: the restart resumes on 1.2.0.
    with serving(state, ports, log):
        listed = seam("pack", "list", "--config", config)
        assert "demo: case-incident@1.2.0" in listed.stdout, listed.stdout


WORKFLOW = os.environ.get("SEAM_WORKFLOW", str(ROOT / "target" / "sev1-bridge.seampack"))


def test_workflow_pack_hot_load_rollback_and_restart(tmp_path):
    """A workflow pack is added beside the mapping, survives a restart, and a rollback removes it."""
    state = tmp_path / "state"
    state.mkdir()
    ports = free_ports(5)
    log = open(tmp_path / "serve.log", "ab")
    config = state / "seam.json"
    with serving(state, ports, log):
        installed = seam("pack", "install", "demo", WORKFLOW, "--config", config)
        assert installed.returncode == 0, installed.stderr
        assert "demo now runs sev1-bridge@1.0.0" in installed.stdout
        listed = seam("pack", "list", "--config", config)
        assert "demo: case-incident@1.0.0" in listed.stdout, "the mapping pack stays"
        assert "workflow sev1-bridge@1.0.0" in listed.stdout, listed.stdout

    # Installed through the API, not configured: the restart brings it back all the same.
    with serving(state, ports, log):
        listed = seam("pack", "list", "--config", config)
        assert "workflow sev1-bridge@1.0.0" in listed.stdout, listed.stdout
        missing = seam("pack", "rollback", "demo", "--pack", "no-such-flow", "--config", config)
        assert missing.returncode != 0 and "runs no pack" in missing.stderr, missing.stderr
        removed = seam("pack", "rollback", "demo", "--pack", "sev1-bridge", "--config", config)
        assert removed.returncode == 0 and "no sev1-bridge (removed)" in removed.stdout, removed.stderr
        assert "workflow " not in seam("pack", "list", "--config", config).stdout

    with serving(state, ports, log):
        listed = seam("pack", "list", "--config", config)
        assert "workflow " not in listed.stdout and "(rolled back)" in listed.stdout, listed.stdout
        # The old noun still answers, hidden, for a release.
        old_noun = seam("plugin", "list", "--config", config)
        assert old_noun.returncode == 0 and "(rolled back)" in old_noun.stdout, old_noun.stderr
