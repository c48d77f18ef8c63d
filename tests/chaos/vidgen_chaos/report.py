"""The printed result: the table of figures and invariants, then the evidence behind it."""

from __future__ import annotations

from collections.abc import Callable

from vidgen_chaos.faults import Applied
from vidgen_chaos.invariants import Verdict


def table(v: Verdict) -> str:
    width = max(len(r.name) for r in v.rows)
    lines = []
    for r in v.rows:
        mark = {True: "ok", False: "BROKEN", None: ""}[r.ok]
        lines.append(f"  {r.name:<{width}}  {mark:<6}  {r.value}")
    return "\n".join(lines)


def render(
    v: Verdict,
    header: str,
    lines_about: Callable[[str], list[str]],
    diagnosis: dict[str, list[str]],
    max_generations: int = 8,
    per_section: int = 12,
) -> str:
    out = [header, table(v)]
    broken = v.broken
    out.append(
        f"\n{len(broken)} invariant(s) broken: " + "; ".join(r.name for r in broken)
        if broken
        else "\nevery invariant holds"
    )
    if v.details:
        total = sum(len(found) for found in v.details.values())
        out.append(f"\nevidence ({total} findings, at most {per_section} shown per check):")
        for section, found in v.details.items():
            out.append(f" {section} ({len(found)}):")
            out.extend(found[:per_section])
            if len(found) > per_section:
                out.append(f"  … {len(found) - per_section} more in report.txt's full list")
    shown = list(dict.fromkeys(v.first.values()))[:max_generations]
    for gid in shown:
        out.append(f"\n--- {gid}: {'; '.join(v.suspects[gid])[:300]}")
        out.extend("  (diagnosis) " + line for line in diagnosis.get(gid, []))
        out.extend("  " + line for line in lines_about(gid))
    return "\n".join(out)


def full_list(v: Verdict, diagnosis: dict[str, list[str]]) -> str:
    """Every finding, and the diagnosis of every suspect (for report.txt)."""
    out = ["\nall findings:"]
    for section, found in v.details.items():
        out.append(f" {section}:")
        out.extend(found)
    out.append("\ndiagnosis of every suspect generation:")
    for gid in v.suspects:
        out.extend(f"  {gid} {line}" for line in diagnosis.get(gid, ["(none)"]))
    return "\n".join(out)


def faults_applied(applied: list[Applied]) -> str:
    lines = ["faults as applied (wall clock):"]
    for a in sorted(applied, key=lambda a: a.started):
        end = f"-{a.ended:%H:%M:%S}" if a.ended and a.ended != a.started else ""
        lines.append(
            f"  {a.started:%H:%M:%S.%f}"[:-3] + f"{end}  {a.fault.describe().strip()}: {a.outcome}"
        )
    return "\n".join(lines)
