"""Write docs/events.asyncapi.yaml from the event models (run: make asyncapi)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from vidgen_common.events.asyncapi import build_document

HEADER = "# Generated from libs/common/src/vidgen_common/events by `make docs`. Do not edit.\n"


def render() -> str:
    body = yaml.safe_dump(build_document(), sort_keys=False, allow_unicode=True, width=100)
    return HEADER + body


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/events.asyncapi.yaml")
    out.write_text(render(), encoding="utf-8")
    print(f"wrote {out}")
