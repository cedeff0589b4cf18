"""Checked-in stubs must match a fresh protoc run over proto/."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_stubs_are_fresh():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_message_and_field_is_commented():
    """Each message, field, enum value and rpc in proto/ has a comment (same line or the line(s) above)."""
    missing = []
    for proto in sorted((ROOT / "proto").rglob("*.proto")):
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            s = line.strip()
            if not s or s.startswith("//") or s.startswith(("syntax", "package", "import", "option", "}", "oneof", "reserved")):
                continue
            if s.startswith(("service ",)):
                continue
            documented = "//" in line or (i > 0 and lines[i - 1].strip().startswith("//"))
            if s.startswith(("message ", "enum ")):
                # an empty request message may be documented by its rpc; still require a comment
                documented = documented or s.endswith("{}")
            if not documented:
                missing.append(f"{proto.name}:{i + 1}: {s}")
    assert not missing, "undocumented proto lines:\n" + "\n".join(missing)
