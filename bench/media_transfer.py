"""Media transfer: storing a 1 GiB output, against a plain streaming copy (the ceiling).

A 1 GiB random file (made once, kept under .local/bench/) is served on loopback by a small
HTTP server with Range support, in a separate process. Into the same object store (S3_*
settings, nanio locally), the same file is then stored, alternately and ``--rounds`` times:

- **ceiling**: a plain streaming copy: httpx stream (network reads joined into 1 MiB chunks)
  → ``MinioStorage.put_stream`` (the same multipart upload our code uses), nothing else;
- **ours**: ``HttpTransfer.fetch``, the function the media handler runs (``Range: bytes=0-``,
  resume bookkeeping, size cap, sha256, same store, and the local copy the video check reads,
  written on the way), with the policy built from the service's settings. The handler's next
  step, the PyAV check of that copy, is *not* part of it: the file is not a video.

Both compute sha256 (``put_stream`` does) and both are checked against the file's digest.
It prints MiB/s of each round, the median of each and their ratio (target: ours ≥ 80 % of the
ceiling; medians, as other load on a shared machine makes single rounds noisy); the peak RSS
growth of this process during our transfers (VmRSS sampled every 5 ms from /proc/self/status,
above the RSS just before the transfer; target: < 64 MiB); and the CPU time this process
spent per GiB on each (less sensitive to other load than MiB/s). Objects and the bucket are
removed afterwards.

    scripts/with-env.sh uv run python bench/media_transfer.py [--size-mib 1024] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from minio import Minio

from vidgen_common.settings import S3Settings
from vidgen_common.storage import MinioStorage
from vidgen_media.bootstrap import http_client, media_spool, media_storage, transfer_policy
from vidgen_media.settings import MediaSettings
from vidgen_media.transfer import HttpTransfer

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".local" / "bench"


# ----------------------------------------------------------------------------- the file


def ensure_file(size: int) -> tuple[Path, str]:
    """The random file of ``size`` bytes and its sha256 (both cached under .local/bench)."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / f"media_{size // MiB}mib.bin"
    digest_path = path.with_suffix(".sha256")
    if path.exists() and path.stat().st_size == size and digest_path.exists():
        return path, digest_path.read_text().strip()
    print(f"writing {path} ({size // MiB} MiB of random bytes)…", flush=True)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(8 * MiB, left))
            digest.update(block)
            out.write(block)
            left -= len(block)
    digest_path.write_text(digest.hexdigest())
    return path, digest.hexdigest()


# ----------------------------------------------------------------------------- the server

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def serve(path: Path) -> None:
    """Serve ``path`` at ``/file`` on a free loopback port; print the port; run forever."""
    size = path.stat().st_size

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            start, end, status = 0, size, 200
            wanted = _RANGE.match(self.headers.get("Range", ""))
            if wanted:
                start = int(wanted[1])
                end = min(size, int(wanted[2]) + 1) if wanted[2] else size
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.end_headers()
            with path.open("rb") as f:
                self.wfile.flush()
                self.connection.sendfile(f, offset=start, count=end - start)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def start_server(path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/file"


# ----------------------------------------------------------------------------- measuring


class RssSampler:
    """Peak VmRSS of this process while running, sampled in a thread."""

    def __init__(self, every_s: float = 0.005) -> None:
        self._every = every_s
        self._stop = threading.Event()
        self.baseline = rss_bytes()
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def plain_copy(client: httpx.AsyncClient, storage: MinioStorage, url: str, key: str) -> str:
    """GET → put_stream and nothing else; network reads joined into 1 MiB chunks, as ours."""

    async def chunks(response: httpx.Response) -> AsyncIterator[bytes]:
        pending: list[bytes] = []
        size = 0
        async for piece in response.aiter_raw():
            pending.append(piece)
            size += len(piece)
            if size >= MiB:
                yield b"".join(pending)
                pending, size = [], 0
        if pending:
            yield b"".join(pending)

    async with client.stream("GET", url) as response:
        response.raise_for_status()
        stored = await storage.put_stream(key, chunks(response), "video/mp4")
    return stored.sha256


async def main(size_mib: int, rounds: int) -> None:
    path, expected = ensure_file(size_mib * MiB)
    size = path.stat().st_size
    bucket = f"bench-media-{uuid.uuid4().hex[:8]}"
    settings = MediaSettings(s3=S3Settings(bucket=bucket), max_video_bytes=2 * size)
    storage = media_storage(settings)
    await storage.ensure_bucket()
    proc, url = start_server(path)
    keys: list[str] = []
    ceiling: list[float] = []
    ours: list[float] = []
    growth: list[int] = []
    cpu_ceiling: list[float] = []
    cpu_ours: list[float] = []
    try:
        async with http_client(settings) as client:
            transfer = HttpTransfer(client, storage, transfer_policy(settings))
            spool = media_spool(settings)
            await plain_copy(client, storage, url, "warm-up")  # page cache, connections, pools
            keys.append("warm-up")
            await storage.remove("warm-up")
            for i in range(rounds):  # alternating which goes first: no order bias
                for which in ("ceiling", "ours") if i % 2 == 0 else ("ours", "ceiling"):
                    key = f"videos/bench/{which}-{i}.mp4"
                    keys.append(key)
                    cpu = time.process_time()
                    if which == "ceiling":
                        started = time.perf_counter()
                        assert await plain_copy(client, storage, url, key) == expected
                        ceiling.append(size / MiB / (time.perf_counter() - started))
                        cpu_ceiling.append(time.process_time() - cpu)
                    else:
                        with RssSampler() as rss, spool.reserve(key) as copy:
                            started = time.perf_counter()
                            result = await transfer.fetch(url, key, copy)
                            elapsed = time.perf_counter() - started
                        cpu_ours.append(time.process_time() - cpu)
                        assert result.sha256 == expected, "our transfer stored different bytes"
                        assert (result.size, result.requests) == (size, 1)
                        ours.append(size / MiB / elapsed)
                        growth.append(rss.growth)
                    await storage.remove(key)
                print(
                    f"round {i + 1}: ceiling {ceiling[-1]:7.1f} MiB/s   ours {ours[-1]:7.1f} MiB/s"
                    f"   ({ours[-1] / ceiling[-1]:6.1%})   RSS growth {growth[-1] / MiB:5.1f} MiB",
                    flush=True,
                )
    finally:
        proc.terminate()
        proc.wait()
        cleanup(settings.s3, bucket, keys)
    med_ceiling, med_ours = statistics.median(ceiling), statistics.median(ours)
    ratio = med_ours / med_ceiling
    best_ratio = max(ours) / max(ceiling)
    worst_growth = max(growth) / MiB
    print(f"\nfile: {size / MiB:.0f} MiB, sha256 {expected[:16]}…, served from loopback")
    print(f"ceiling (plain streaming copy): {med_ceiling:7.1f} MiB/s (median of {rounds})")
    print(f"ours (HttpTransfer.fetch):      {med_ours:7.1f} MiB/s (median of {rounds})")
    verdict = "meets" if ratio >= 0.8 else "MISSES"
    print(f"ratio of the medians: {ratio:.1%} of the ceiling ({verdict} the 80 % target)")
    print(f"best against best: {best_ratio:.1%}")
    gib = size / 1024**3
    cpu_c, cpu_o = statistics.median(cpu_ceiling) / gib, statistics.median(cpu_ours) / gib
    print(f"CPU of this process per GiB (median): ceiling {cpu_c:.2f} s, ours {cpu_o:.2f} s")
    verdict = "meets" if worst_growth < 64 else "MISSES"
    print(f"peak RSS growth during ours: {worst_growth:.1f} MiB (worst round; {verdict} < 64 MiB)")


def cleanup(s3: S3Settings, bucket: str, keys: list[str]) -> None:
    endpoint = s3.endpoint.split("://", 1)[1]
    client = Minio(
        endpoint,
        access_key=s3.access_key,
        secret_key=s3.secret_key.get_secret_value(),
        secure=s3.endpoint.startswith("https"),
        region=s3.region,
    )
    for key in keys:
        client.remove_object(bucket, key)
    client.remove_bucket(bucket)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
    else:
        asyncio.run(main(args.size_mib, args.rounds))
