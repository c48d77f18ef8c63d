"""The catalog and the verdicts load without the SDK: the gateway reads them without it."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import vidgen_runway.catalog, vidgen_runway.verdicts
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"runwayml", "httpx", "vidgen_common"})
print(",".join(loaded))
"""


def test_the_catalog_does_not_import_the_sdk() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
