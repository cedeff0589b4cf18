#!/usr/bin/env python3
"""Regenerate the checked-in Python stubs from proto/ (or check they are fresh).

    python scripts/gen_protos.py          # rewrite atlasrl/v1/*_pb2*.py
    python scripts/gen_protos.py --check  # exit 1 if any stub differs from a fresh build

Stubs are generated with the grpcio-tools version pinned in pyproject.toml so the
output is byte-stable; tests/test_protos.py runs --check.
"""
from __future__ import annotations

import argparse
import filecmp
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT  # protos live at proto/atlasrl/v1/*.proto -> atlasrl/v1/*_pb2.py


def generate(out: pathlib.Path) -> list[pathlib.Path]:
    import grpc_tools
    from grpc_tools import protoc

    wkt = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(PROTO_DIR.rglob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{wkt}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(p.relative_to(PROTO_DIR)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out / "atlasrl" / "v1").glob("*_pb2*.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    if not args.check:
        generate(OUT_DIR)
        print("regenerated stubs in atlasrl/v1/")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(pathlib.Path(tmp))
        stale = []
        names = {p.name for p in fresh}
        for f in fresh:
            mine = OUT_DIR / "atlasrl" / "v1" / f.name
            if not mine.exists() or not filecmp.cmp(f, mine, shallow=False):
                stale.append(f.name)
        extra = [p.name for p in (OUT_DIR / "atlasrl" / "v1").glob("*_pb2*.py*") if p.name not in names]
        if stale or extra:
            print(f"stale stubs: {stale}; stubs without a .proto: {extra}. Run: python scripts/gen_protos.py")
            return 1
    print("stubs are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
