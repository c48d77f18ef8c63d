"""The ``vidgen`` command: a client of vidgen's REST API.

    export TOKEN=$(uv run vidgen token alice)      # a development token (local signing)
    uv run vidgen upload docs/sample.png           # → projectId
    uv run vidgen generate PROJECT "a misty lake" --watch
    uv run vidgen list --status completed
    uv run vidgen download GENERATION -o video.mp4
    uv run vidgen webhooks create https://example.com/hooks   # signed webhooks (docs/webhooks.md)
    uv run vidgen usage                            # credits spent, reserved, remaining
    uv run vidgen --token "$(uv run vidgen token ops --admin)" budget set bob --daily 500

The API is ``VIDGEN_API_URL`` (default http://127.0.0.1:8000); the token is ``--token``,
``VIDGEN_TOKEN``, or a development token minted for ``--user``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vidgen_cli import webhooks
from vidgen_cli.client import ApiError, Client
from vidgen_cli.context import client as _client
from vidgen_cli.context import err, opts, out
from vidgen_cli.context import fail as _fail
from vidgen_cli.context import mint as _mint
from vidgen_cli.context import show as _show

app = typer.Typer(help="vidgen: turn an image and a prompt into a video", no_args_is_help=True)
app.add_typer(webhooks.app, name="webhooks")


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


STATUS_FIELDS = (
    "generationId", "projectId", "status", "progress", "priority", "queuePosition",
    "queueReason", "waitingUntil", "estimatedStartAt", "estimatedCompletionAt",
    "estimatedCompletionP90At",
    "errorCode", "errorMessage", "costCredits", "estimatedCostCredits", "settledCostCredits",
    "createdAt", "completedAt", "videoUrl",
)  # fmt: skip


@app.command()
def token(
    user: Annotated[str, typer.Argument(help="user id: the token's `sub`")],
    ttl: Annotated[int | None, typer.Option(help="lifetime in seconds")] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="with the administrator role (/api/admin)")
    ] = False,
) -> None:
    """Print a development token for USER (signed locally with the gateway's dev settings)."""
    typer.echo(_mint(user, ttl, admin=admin))


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
    priority: Annotated[
        str | None, typer.Option(help="low, normal or high: order among your own waiting ones")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="retry-safe request key")] = None,
    watch_: Annotated[bool, typer.Option("--watch", help="follow it to the end")] = False,
) -> None:
    """Ask for a video from a project's image and a prompt."""
    try:
        with _client() as client:
            started = client.generate(
                project_id, prompt, idempotency_key, model=model, ratio=ratio,
                duration=duration, seed=seed, priority=priority,
            )  # fmt: skip
            _show(started, ("generationId", "status", "estimatedCostCredits"))
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
            progress.update(bar, completed=state["progress"], status=_short_status(state))
    _show(last, STATUS_FIELDS)
    if last.get("status") != "completed":
        raise typer.Exit(1)


def _short_status(state: dict[str, Any]) -> str:
    """``queued #3`` while waiting, else the status."""
    place = state.get("queuePosition")
    return f"queued #{place}" if place is not None else str(state["status"])


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


def _credits(value: object) -> str:
    return "unlimited" if value is None else str(value)


def _show_usage(data: dict[str, Any]) -> None:
    if opts.json:
        out.print_json(json.dumps(data))
        return
    periods = Table("period", "budget", "spent", "reserved", "remaining", "resets at")
    for p in data["periods"]:
        periods.add_row(
            f"{p['period']} {p['start']}", _credits(p["budgetCredits"]), str(p["spentCredits"]),
            str(p["reservedCredits"]), _credits(p["remainingCredits"]), p["resetsAt"],
        )  # fmt: skip
    out.print(f"[bold]{data['userId']}[/bold] (budgets: {data['budgetSource']}), in credits")
    out.print(periods)
    for title, rows, key in (("model", data["byModel"], "model"), ("day", data["byDay"], "day")):
        table = Table(f"this month by {title}", "generations", "spent", "reserved")
        for r in rows:
            table.add_row(
                str(r[key]), str(r["generations"]), str(r["spentCredits"]),
                str(r["reservedCredits"]),
            )  # fmt: skip
        out.print(table)


@app.command()
def usage(
    user_id: Annotated[
        str | None, typer.Option("--of", help="another user's (needs an administrator token)")
    ] = None,
) -> None:
    """Credits spent, reserved and remaining this day and month, by model and by day."""
    try:
        with _client() as client:
            _show_usage(client.admin_usage(user_id) if user_id else client.usage())
    except ApiError as exc:
        raise _fail(exc) from exc


budget_app = typer.Typer(help="a user's credit budgets (an administrator token is needed)")
app.add_typer(budget_app, name="budget")

BUDGET_FIELDS = ("userId", "source", "dailyCredits", "monthlyCredits", "updatedBy", "updatedAt")


@budget_app.command("show")
def budget_show(user_id: str) -> None:
    """The budgets in force for USER_ID (an override, or the defaults)."""
    try:
        with _client() as client:
            _show(client.budget(user_id), BUDGET_FIELDS)
    except ApiError as exc:
        raise _fail(exc) from exc


@budget_app.command("set")
def budget_set(
    user_id: str,
    daily: Annotated[int | None, typer.Option(help="credits per UTC day; omit: unlimited")] = None,
    monthly: Annotated[
        int | None, typer.Option(help="credits per UTC month; omit: unlimited")
    ] = None,
) -> None:
    """Override USER_ID's budgets (from the next request on)."""
    try:
        with _client() as client:
            _show(client.set_budget(user_id, daily, monthly), BUDGET_FIELDS)
    except ApiError as exc:
        raise _fail(exc) from exc


@budget_app.command("clear")
def budget_clear(user_id: str) -> None:
    """Remove USER_ID's override: the default budgets apply again."""
    try:
        with _client() as client:
            client.clear_budget(user_id)
            _show(client.budget(user_id), BUDGET_FIELDS)
    except ApiError as exc:
        raise _fail(exc) from exc
