"""Write web/openapi.json, the gateway's OpenAPI document the web page's client is generated from.

    uv run python scripts/gen_openapi.py            # write it (part of `make docs`)
    uv run python scripts/gen_openapi.py --check    # exit 1 if the committed one drifted

The document is the one a development gateway serves at /openapi.json (with the development
sign-in; a production gateway serves the same without it). `npm run build` in web/ then fails
when web/src/api/schema.d.ts was not regenerated from it (`npm run gen:api`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, cast

from vidgen_gateway.api.deps import GatewayDeps
from vidgen_gateway.app import create_app
from vidgen_gateway.settings import GatewaySettings

OUT = Path(__file__).resolve().parents[1] / "web" / "openapi.json"


def document() -> dict[str, Any]:
    """The OpenAPI document of a development gateway (no adapter is touched to build it)."""
    settings = GatewaySettings(env="development", web_enabled=False, cors_origins=[])
    deps = cast(GatewayDeps, _NoDeps())
    return create_app(settings, deps).openapi()


class _NoDeps:
    """Stands in for the adapters: building the app and its schema reads none of them."""

    uow = sessions = storage = changes = verifier = check_ready = metrics = None
    channel = "openapi"


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} drifted from the gateway: run `make docs`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
