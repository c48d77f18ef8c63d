"""The web page's first paint in headless Chromium, and the size of its JavaScript.

    make web && uv run python bench/web_first_paint.py [--loads 15]

Serves web/dist from a local static server (the page's API calls answer 404 there, which does
not delay the first paint: the form is in the HTML), opens it in a fresh browser context per
load, and prints the median and worst first-contentful-paint read from the Performance API,
plus the JavaScript's gzipped size. Figures only; nothing passes or fails.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import statistics
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "web" / "dist"
sys.path.insert(0, str(ROOT))
from tests.support.browser import CHROMIUM_ARGS, chromium_path  # noqa: E402


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loads", type=int, default=15)
    args = parser.parse_args()
    if not (DIST / "index.html").exists():
        print("web/dist is missing: run `make web`", file=sys.stderr)
        return 1
    chromium = chromium_path()
    if chromium is None:
        print("Chromium is missing: apt-get install -y chromium", file=sys.stderr)
        return 1
    js = list((DIST / "assets").glob("*.js"))
    raw = sum(p.stat().st_size for p in js)
    packed = sum(len(gzip.compress(p.read_bytes(), 9)) for p in js)
    print(f"JavaScript: {len(js)} file(s), {raw / 1000:.1f} kB, gzipped {packed / 1000:.1f} kB")

    handler = functools.partial(_Quiet, directory=str(DIST))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    fcp: list[float] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
            )
            for _ in range(args.loads):
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()
                page.goto(url, wait_until="load")
                page.wait_for_function(
                    "performance.getEntriesByName('first-contentful-paint').length > 0"
                )
                fcp.append(
                    page.evaluate(
                        "performance.getEntriesByName('first-contentful-paint')[0].startTime"
                    )
                )
                context.close()
            browser.close()
    finally:
        server.shutdown()
    median, worst = statistics.median(fcp), max(fcp)
    print(
        f"first contentful paint, {len(fcp)} loads in fresh contexts: median {median:.0f} ms,"
        f" worst {worst:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
