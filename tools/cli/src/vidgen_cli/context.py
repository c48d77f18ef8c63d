"""What every command shares: the global options, the consoles, the API client, output."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from vidgen_cli.client import ApiError, Client
from vidgen_common.devtokens import DevTokenSettings, mint_dev_token

out = Console()
err = Console(stderr=True)


class Options:
    api_url: str = "http://127.0.0.1:8000"
    token: str | None = None
    user: str | None = None
    json: bool = False


opts = Options()


def client() -> Client:
    token = opts.token
    if token is None:
        if opts.user is None:
            err.print("[red]no token:[/red] pass --token, set VIDGEN_TOKEN, or use --user NAME")
            raise typer.Exit(2)
        token = mint(opts.user, None)
    return Client(opts.api_url, token)


def mint(user: str, ttl: int | None, *, admin: bool = False) -> str:
    settings = DevTokenSettings()
    try:
        return mint_dev_token(settings, user, ttl, roles=(settings.admin_role,) if admin else ())
    except ValueError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from exc


def show(data: dict[str, Any], fields: tuple[str, ...] = ()) -> None:
    if opts.json or not fields:
        out.print_json(json.dumps(data))
        return
    table = Table(show_header=False, box=None)
    for name in fields:
        if data.get(name) is not None:
            table.add_row(f"[bold]{name}[/bold]", str(data[name]))
    out.print(table)


def fail(exc: ApiError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)
