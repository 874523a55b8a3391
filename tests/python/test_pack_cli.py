"""`seam pack keygen|build|sign|verify` as an ISV and an operator use them."""
import subprocess

from conftest import ROOT, SEAM

COMPONENT = ROOT / "target" / "wasm32-wasip2" / "pack" / "case_incident.wasm"
MANIFEST = ROOT / "plugins" / "case-incident" / "pack.json"


def seam(*args):
    return subprocess.run([SEAM, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_build_sign_verify_and_refusals(tmp_path):
    isv, other = tmp_path / "isv.key", tmp_path / "other.key"
    assert seam("pack", "keygen", isv).returncode == 0
    assert seam("pack", "keygen", other).returncode == 0
    again = seam("pack", "keygen", isv)
    assert again.returncode != 0 and "not overwriting" in again.stderr

    pack = tmp_path / "case-incident.seampack"
    built = seam("pack", "build", COMPONENT, "--manifest", MANIFEST, "-o", pack)
    assert built.returncode == 0, built.stderr
    assert "case-incident@1.0.0" in built.stdout

    unsigned = seam("pack", "verify", pack, "--trust", f"{isv}.pub")
    assert unsigned.returncode != 0 and "unsigned" in unsigned.stderr

    assert seam("pack", "sign", pack, "--key", isv).returncode == 0
    ok = seam("pack", "verify", pack, "--trust", f"{isv}.pub")
    assert ok.returncode == 0, ok.stderr
    assert "signature: valid" in ok.stdout and "sha256" in ok.stdout

    foreign = seam("pack", "verify", pack, "--trust", f"{other}.pub")
    assert foreign.returncode != 0 and "does not trust" in foreign.stderr

    data = bytearray(pack.read_bytes())
    at = data.find(b'"1.0.0"')
    data[at + 5] = ord("1")
    tampered = tmp_path / "tampered.seampack"
    tampered.write_bytes(bytes(data))
    refused = seam("pack", "verify", tampered, "--trust", f"{isv}.pub")
    assert refused.returncode != 0 and "changed after signing" in refused.stderr

    plain = seam("pack", "verify", COMPONENT)
    assert plain.returncode != 0 and "seam pack build" in plain.stderr
