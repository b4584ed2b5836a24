"""Audit every image's hash-locked requirements for known vulnerabilities (pip-audit, the PyPA's auditor).

    python scripts/audit_images.py            # all charts/images/*.lock.txt; exit 1 on any finding

pip-audit checks each pinned package against the OSV / PyPI advisory database. It reports no severity,
so this gate fails on every known vulnerability, which includes the known-exploited and critical ones;
accepted findings go in .github/audit-ignore.txt with an expiry date and a reason (an expired entry
fails again). The lock files are what the images install, so this audits what ships.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE = ROOT / ".github" / "audit-ignore.txt"
ENTRY = re.compile(r"^(?P<id>[A-Za-z0-9-]+)\s+(?P<until>\d{4}-\d{2}-\d{2})\s+(?P<why>\S.*)$")


def ignored(text: str, today: dt.date) -> tuple[list[str], list[str]]:
    """(ids still accepted, problems: malformed or expired entries)."""
    keep, problems = [], []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = ENTRY.match(line)
        if not m:
            problems.append(f"{IGNORE.name}:{n}: expected '<id> <until YYYY-MM-DD> <why>', got {line!r}")
        elif dt.date.fromisoformat(m["until"]) < today:
            problems.append(f"{IGNORE.name}:{n}: {m['id']} was accepted until {m['until']}: upgrade or renew it")
        else:
            keep.append(m["id"])
    return keep, problems


def audit_command(lock: Path, ignore_ids: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "pip_audit", "--requirement", str(lock), "--require-hashes", "--disable-pip",
           "--progress-spinner", "off", "--strict"]
    for vuln in ignore_ids:
        cmd += ["--ignore-vuln", vuln]
    return cmd


def main() -> int:
    ignore_ids, problems = ignored(IGNORE.read_text() if IGNORE.is_file() else "", dt.date.today())
    for problem in problems:
        print(f"audit: {problem}", file=sys.stderr)
    failed = bool(problems)
    for lock in sorted((ROOT / "charts" / "images").glob("*.lock.txt")):
        print(f"== {lock.relative_to(ROOT)}", flush=True)
        failed |= subprocess.run(audit_command(lock, ignore_ids)).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
