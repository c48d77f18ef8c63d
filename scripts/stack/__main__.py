"""``python -m scripts.stack [-f FILE]... COMMAND``: docker-compose.yml with podman.

Commands: ``up [SERVICE...]`` (start, gated on health, then wait until every started service
is healthy), ``down [-v]``, ``ps``, ``logs SERVICE``, ``builds`` (the images
docker-compose.yml builds, one tab-separated line each), ``members`` (the workspace's
distributions), ``closure PACKAGE`` (the distributions its image may hold) and ``system``
(where the running system answers, as JSON, for the e2e tests). Without ``-f``:
docker-compose.yml. The project name is ``-p``, else COMPOSE_PROJECT_NAME, else the file's
``name``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scripts.stack.compose import load
from scripts.stack.describe import builds, closure, members, system
from scripts.stack.errors import StackError
from scripts.stack.podman import container_name
from scripts.stack.runner import Stack, logs

ROOT = Path(__file__).resolve().parents[2]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.stack", description=__doc__)
    parser.add_argument("-f", "--file", action="append", type=Path, dest="files")
    parser.add_argument("-p", "--project-name")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up")
    up.add_argument("services", nargs="*")
    down = commands.add_parser("down")
    down.add_argument("-v", "--volumes", action="store_true")
    commands.add_parser("ps")
    log = commands.add_parser("logs")
    log.add_argument("service")
    log.add_argument("--tail", type=int, default=200)
    listing = commands.add_parser("builds")
    listing.add_argument("--with-package", action="store_true")
    listing.add_argument("names", nargs="*")
    commands.add_parser("members")
    closure_of = commands.add_parser("closure")
    closure_of.add_argument("package")
    commands.add_parser("system")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.command == "members":
        print("\n".join(members(ROOT)))
        return 0
    if args.command == "closure":
        print("\n".join(closure(ROOT, args.package)))
        return 0
    files = args.files or [ROOT / "docker-compose.yml"]
    project = load(files, name=args.project_name, all_profiles=args.command == "builds")
    if args.command == "builds":
        for b in builds(project):
            if args.names and b["name"] not in args.names:
                continue
            fields = ["name", "image", "dockerfile", "target", "args"]
            fields += ["package", "health"] if args.with_package else []
            print("\t".join(b[f] or "-" for f in fields))  # "-": no value (bash's read)
        return 0
    if args.command == "system":
        print(json.dumps(system(project), indent=2))
        return 0
    stack = Stack(project)
    if args.command == "up":
        stack.up(args.services)
    elif args.command == "down":
        stack.down(volumes=args.volumes)
    elif args.command == "ps":
        for name, status in stack.status():
            print(f"{name:<20} {status}")
    elif args.command == "logs":
        print(logs(container_name(project, args.service), args.tail))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StackError as e:
        print(f"[stack] error: {e}", file=sys.stderr)
        sys.exit(1)
