"""The ``vidgen`` command: a client of vidgen's REST API.

    export TOKEN=$(uv run vidgen token alice)      # a development token (local signing)
    uv run vidgen upload docs/sample.png           # → projectId
    uv run vidgen generate PROJECT "a misty lake" --watch
    uv run vidgen list --status completed
    uv run vidgen download GENERATION -o video.mp4

The API is ``VIDGEN_API_URL`` (default http://127.0.0.1:8000); the token is ``--token``,
``VIDGEN_TOKEN``, or a development token minted for ``--user``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vidgen_cli.client import ApiError, Client
from vidgen_common.devtokens import DevTokenSettings, mint_dev_token

app = typer.Typer(help="vidgen: turn an image and a prompt into a video", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


class Options:
    api_url: str = "http://127.0.0.1:8000"
    token: str | None = None
    user: str | None = None
    json: bool = False


opts = Options()


@app.callback()
def main(
    api_url: Annotated[
        str, typer.Option(envvar="VIDGEN_API_URL", help="the gateway")
    ] = "http://127.0.0.1:8000",
    token: Annotated[str | None, typer.Option(envvar="VIDGEN_TOKEN", help="bearer token")] = None,
    user: Annotated[
        str | None, typer.Option(help="act as USER with a development token (no --token needed)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print raw JSON")] = False,
) -> None:
    """vidgen: turn an image and a prompt into a video."""
    opts.api_url, opts.token, opts.user, opts.json = api_url, token, user, as_json


def _client() -> Client:
    token = opts.token
    if token is None:
        if opts.user is None:
            err.print("[red]no token:[/red] pass --token, set VIDGEN_TOKEN, or use --user NAME")
            raise typer.Exit(2)
        token = _mint(opts.user, None)
    return Client(opts.api_url, token)


def _mint(user: str, ttl: int | None) -> str:
    try:
        return mint_dev_token(DevTokenSettings(), user, ttl)
    except ValueError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from exc


def _show(data: dict[str, Any], fields: tuple[str, ...] = ()) -> None:
    if opts.json or not fields:
        out.print_json(json.dumps(data))
        return
    table = Table(show_header=False, box=None)
    for name in fields:
        if data.get(name) is not None:
            table.add_row(f"[bold]{name}[/bold]", str(data[name]))
    out.print(table)


def _fail(exc: ApiError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


STATUS_FIELDS = (
    "generationId", "projectId", "status", "progress", "errorCode", "errorMessage",
    "costCredits", "createdAt", "completedAt", "videoUrl",
)  # fmt: skip


@app.command()
def token(
    user: Annotated[str, typer.Argument(help="user id: the token's `sub`")],
    ttl: Annotated[int | None, typer.Option(help="lifetime in seconds")] = None,
) -> None:
    """Print a development token for USER (signed locally with the gateway's dev settings)."""
    typer.echo(_mint(user, ttl))


@app.command()
def upload(image: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Upload a PNG, JPEG or WebP image; prints the new project."""
    try:
        with _client() as client:
            _show(client.upload(image), ("projectId", "width", "height", "imageUrl"))
    except ApiError as exc:
        raise _fail(exc) from exc


@app.command()
def generate(
    project_id: str,
    prompt: str,
    model: Annotated[str | None, typer.Option()] = None,
    ratio: Annotated[str | None, typer.Option()] = None,
    duration: Annotated[int | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="retry-safe request key")] = None,
    watch_: Annotated[bool, typer.Option("--watch", help="follow it to the end")] = False,
) -> None:
    """Ask for a video from a project's image and a prompt."""
    try:
        with _client() as client:
            started = client.generate(
                project_id, prompt, idempotency_key, model=model, ratio=ratio,
                duration=duration, seed=seed,
            )  # fmt: skip
            _show(started, ("generationId", "status"))
            if watch_:
                _watch(client, started["generationId"])
    except ApiError as exc:
        raise _fail(exc) from exc


@app.command()
def status(generation_id: str) -> None:
    """Show a generation."""
    try:
        with _client() as client:
            _show(client.status(generation_id), STATUS_FIELDS)
    except ApiError as exc:
        raise _fail(exc) from exc


def _watch(client: Client, generation_id: str) -> None:
    last: dict[str, Any] = {}
    columns = (
        TextColumn("[bold]{task.fields[status]:<11}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as progress:
        bar = progress.add_task("generation", total=1.0, status="…")
        for state in client.events(generation_id):
            last = state
            progress.update(bar, completed=state["progress"], status=state["status"])
    _show(last, STATUS_FIELDS)
    if last.get("status") != "completed":
        raise typer.Exit(1)


@app.command()
def watch(generation_id: str) -> None:
    """Follow a generation live until it ends (exit 1 unless it completed)."""
    try:
        with _client() as client:
            _watch(client, generation_id)
    except ApiError as exc:
        raise _fail(exc) from exc


@app.command(name="list")
def list_(
    project: Annotated[str | None, typer.Option(help="only this project")] = None,
    status_: Annotated[str | None, typer.Option("--status", help="only this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="nextCursor of the previous page")] = None,
) -> None:
    """List your generations, newest first."""
    try:
        with _client() as client:
            page = client.list(projectId=project, status=status_, limit=limit, cursor=cursor)
    except ApiError as exc:
        raise _fail(exc) from exc
    if opts.json:
        out.print_json(json.dumps(page))
        return
    table = Table("generation", "status", "progress", "prompt", "created")
    for item in page["items"]:
        table.add_row(
            item["generationId"], item["status"], f"{item['progress']:.0%}",
            item["prompt"][:40], item["createdAt"][:19],
        )  # fmt: skip
    out.print(table)
    if page.get("nextCursor"):
        out.print(f"more: --cursor {page['nextCursor']}")


@app.command()
def cancel(generation_id: str) -> None:
    """Cancel a generation that has not finished."""
    try:
        with _client() as client:
            _show(client.cancel(generation_id), ("generationId", "status"))
    except ApiError as exc:
        raise _fail(exc) from exc


@app.command()
def download(
    generation_id: str,
    output: Annotated[Path | None, typer.Option("-o", "--output")] = None,
) -> None:
    """Download a completed generation's video."""
    target = output or Path(f"{generation_id}.mp4")
    try:
        with _client() as client:
            size = client.download(generation_id, target)
    except ApiError as exc:
        raise _fail(exc) from exc
    out.print(f"saved {target} ({size:,} bytes)")
