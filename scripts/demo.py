"""The demo (``make demo``): upload the sample image, generate a video, watch it live.

Uses the running system (``make run``) or, if nothing answers on the gateway, starts one for
the duration of the demo. Ends by printing where the video is stored, its size and duration,
checked by opening the downloaded file; exits non-zero with the reason on any failure.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from vidgen_cli.client import ApiError, Client
from vidgen_common.devtokens import DevTokenSettings, mint_dev_token

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "docs" / "sample.png"
console = Console()


class DemoError(Exception):
    pass


def ready(gateway: str) -> bool:
    try:
        return httpx.get(f"{gateway}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_system(gateway_port: int) -> subprocess.Popen[bytes]:
    log = ROOT / ".local" / "logs" / "demo-run.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"[dim]no system on port {gateway_port}: starting one (log: {log})[/dim]")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "run.py"), "--gateway-port", str(gateway_port)],
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def watch(client: Client, generation_id: str) -> dict[str, Any]:
    """Follow the live stream with a progress bar until a terminal status."""
    last: dict[str, Any] = {}
    columns = (
        TextColumn("[bold]{task.fields[status]:<11}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("video", total=1.0, status="queued")
        for last in client.events(generation_id):
            progress.update(bar, completed=last["progress"], status=last["status"])
    return last


def describe(video: Path) -> tuple[float, int, int, str]:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        if container.duration is None:
            raise DemoError("the stored file has no duration: not a playable video")
        duration = container.duration / 1_000_000
        return duration, stream.width, stream.height, stream.codec_context.name


def demo(gateway: str, user: str, prompt: str) -> None:
    with Client(gateway, mint_dev_token(DevTokenSettings(), user)) as client:
        console.print(f"uploading [bold]{SAMPLE.relative_to(ROOT)}[/bold] as {user}…")
        project = client.upload(SAMPLE)
        console.print(f"  project {project['projectId']}")
        generation_id = client.generate(project["projectId"], prompt)["generationId"]
        console.print(f"generating [bold]{generation_id}[/bold]: “{prompt}”")
        final = watch(client, generation_id)
        if final.get("status") != "completed":
            reason = final.get("errorMessage") or final.get("status") or "stream ended early"
            raise DemoError(
                f"generation {final.get('status')}: {reason} ({final.get('errorCode')})"
            )
        out = ROOT / ".local" / "demo" / f"{generation_id}.mp4"
        out.parent.mkdir(parents=True, exist_ok=True)
        size = client.download(generation_id, out)
        status = client.status(generation_id)
    duration, width, height, codec = describe(out)
    url = status["videoUrl"]
    console.print("\n[bold green]done[/bold green]")
    console.print(f"  stored at   s3:/{urlsplit(url).path}")
    console.print(f"  size        {size:,} bytes")
    console.print(f"  duration    {duration:.2f} s ({width}x{height} {codec})")
    console.print(f"  cost        {status['costCredits']} Runway credits")
    console.print(f"  local copy  {out.relative_to(ROOT)}")
    console.print(f"  link        {url[:90]}… (expires)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gateway", default="http://127.0.0.1:8000")
    parser.add_argument("--user", default="demo-user")
    parser.add_argument("--prompt", default="a slow cinematic pan across misty hills at dawn")
    parser.add_argument("--start-timeout", type=float, default=180)
    args = parser.parse_args()

    system: subprocess.Popen[bytes] | None = None
    try:
        if not ready(args.gateway):
            system = start_system(urlsplit(args.gateway).port or 8000)
            deadline = time.monotonic() + args.start_timeout
            while not ready(args.gateway):
                if system.poll() is not None or time.monotonic() > deadline:
                    raise DemoError("the system did not start: see .local/logs/demo-run.log")
                time.sleep(0.5)
        demo(args.gateway, args.user, args.prompt)
        return 0
    except (DemoError, ApiError, httpx.HTTPError) as exc:
        console.print(f"[bold red]demo failed:[/bold red] {exc}")
        return 1
    finally:
        if system is not None and system.poll() is None:
            console.print("[dim]stopping the system the demo started…[/dim]")
            system.send_signal(signal.SIGTERM)
            try:
                system.wait(60)
            except subprocess.TimeoutExpired:
                system.kill()


if __name__ == "__main__":
    sys.exit(main())
