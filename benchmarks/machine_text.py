"""Write the two machine-generated test files of the adaptation benchmark (issue 8).

Text a machine writes repeats itself far beyond the model's 4096-token window (package
names, maintainers, dependency lists, timestamps), which is where learning the file pays
most. This script makes such files from the machine it runs on:

* ``dpkg.log``: the first ~48 KB of /var/log/dpkg.log, cut at a line end;
* ``packages.json``: the first ~48 KB of a JSON listing of the installed Debian packages
  (name, version, architecture, maintainer, section, priority, size, depends, summary).

The copies made on the development machine are committed under ``benchmarks/data/`` so the
figures in docs/BENCHMARKS.md can be reproduced; run this to make your own.

    python benchmarks/machine_text.py [OUTDIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

LIMIT = 48 << 10
FIELDS = ["Package", "Version", "Architecture", "Maintainer", "Section", "Priority", "Installed-Size", "Depends", "binary:Summary"]


def dpkg_log() -> bytes:
    raw = Path("/var/log/dpkg.log").read_bytes()[:LIMIT]
    return raw[: raw.rfind(b"\n") + 1]


def packages_json() -> bytes:
    fmt = "\t".join("${%s}" % f for f in FIELDS) + "\n"
    out = subprocess.run(["dpkg-query", "-W", "-f=" + fmt], capture_output=True, text=True, check=True).stdout
    rows, size = [], 2
    for line in out.splitlines():
        vals = dict(zip(FIELDS, line.split("\t")))
        row = {
            "package": vals["Package"], "version": vals["Version"], "architecture": vals["Architecture"],
            "maintainer": vals["Maintainer"], "section": vals["Section"], "priority": vals["Priority"],
            "installed_size_kb": int(vals["Installed-Size"] or 0),
            "depends": [d.strip() for d in vals["Depends"].split(",") if d.strip()],
            "summary": vals["binary:Summary"],
        }
        size += len(json.dumps(row, indent=2)) + 4
        if size > LIMIT:
            break
        rows.append(row)
    return (json.dumps(rows, indent=2) + "\n").encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", nargs="?", type=Path, default=Path(__file__).parent / "data")
    out = ap.parse_args().outdir
    out.mkdir(parents=True, exist_ok=True)
    for name, data in (("dpkg.log", dpkg_log()), ("packages.json", packages_json())):
        (out / name).write_bytes(data)
        print(f"{out / name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
