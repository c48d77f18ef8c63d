"""``python -m vidgen_chaos`` (``make chaos``): one chaos run; exit 1 when an invariant breaks.

make chaos                                   # full size, a random seed (printed)
make chaos CHAOS_ARGS="--seed 42 --size ci"  # replay a run: same seed, same schedule
PYTHONPATH=tests/chaos uv run python -m vidgen_chaos --signal term --generations 100
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import sys
import time
from pathlib import Path

from vidgen_chaos.faults import SIZES
from vidgen_chaos.run import Config, run
from vidgen_chaos.stack import ROOT


def parse(argv: list[str]) -> Config:
    p = argparse.ArgumentParser(
        prog="vidgen_chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument(
        "--signal",
        choices=("kill", "term"),
        default="kill",
        help="stop processes with kill -9 or SIGTERM",
    )
    p.add_argument("--generations", type=int, help="override the size's number of generations")
    p.add_argument("--kills", type=int, help="override the size's stops per process kind")
    p.add_argument(
        "--infra",
        help="override the size's infrastructure faults: PART:KIND,... (PART kafka, s3, "
        "postgres; KIND restart or outage), or none",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SERVICE:VAR=VALUE",
        help="a service setting (SERVICE: gateway, generator, poller, media or *)",
    )
    p.add_argument(
        "--out", type=Path, help="where logs and report.txt go (default .local/chaos/...)"
    )
    p.add_argument(
        "--keep-stack",
        action="store_true",
        help="keep the private data directories (databases, broker, store) when a check fails",
    )
    a = p.parse_args(argv)
    seed = a.seed if a.seed is not None else secrets.randbelow(10**6)
    size = SIZES[a.size]
    if a.generations:
        size = dataclasses.replace(size, generations=a.generations)
    if a.kills is not None:
        size = dataclasses.replace(size, kills_per_process=a.kills)
    if a.infra is not None:
        chosen = tuple(x for x in a.infra.split(",") if x and x != "none")
        for item in chosen:
            part, _, kind = item.partition(":")
            if part not in ("kafka", "s3", "postgres") or kind not in ("restart", "outage"):
                p.error(f"--infra {item!r}: expected PART:restart or PART:outage")
        size = dataclasses.replace(size, infra=chosen)
    overrides: dict[str, dict[str, str]] = {}
    for item in a.set:
        scope, _, assignment = item.partition(":")
        var, _, value = assignment.partition("=")
        if not var or not _:
            p.error(f"--set {item!r}: expected SERVICE:VAR=VALUE")
        overrides.setdefault(scope, {})[var] = value
    out = (
        a.out or ROOT / ".local" / "chaos" / f"{time.strftime('%Y%m%d-%H%M%S')}-{size.name}-{seed}"
    )
    return Config(
        size=size,
        seed=seed,
        out=out,
        signal=a.signal,
        overrides=overrides,
        keep_stack=a.keep_stack,
    )


def main(argv: list[str]) -> int:
    cfg = parse(argv)
    try:
        verdict = asyncio.run(run(cfg))
    except KeyboardInterrupt:
        print("interrupted; everything was stopped", file=sys.stderr)
        return 130
    return 1 if verdict.broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
