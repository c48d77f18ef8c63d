"""``vidgen webhooks …``: register and manage signed webhook endpoints (docs/webhooks.md).

    vidgen webhooks create https://example.com/hooks --event generation.completed
    vidgen webhooks list | get ID | delete ID
    vidgen webhooks update ID --url https://… --enable
    vidgen webhooks rotate ID --overlap 3600       # both secrets sign during the overlap
    vidgen webhooks ping ID                        # a webhook.ping, sent at once
    vidgen webhooks deliveries ID                  # every attempt: status code, latency, error
    vidgen webhooks redeliver ID DELIVERY          # the same message again (same webhook-id)

They go through the gateway, which forwards ``/api/webhooks*`` to the notifier.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.table import Table

from vidgen_cli.client import ApiError, Client
from vidgen_cli.context import client, fail, opts, out, show

app = typer.Typer(help="signed webhooks: endpoints, secrets, deliveries", no_args_is_help=True)

ENDPOINT_FIELDS = (
    "id", "url", "events", "description", "enabled", "disabledReason", "createdAt", "secret",
)  # fmt: skip
EventsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--event",
        help="generation.completed | generation.failed | generation.cancelled | "
        "generation.progressed (repeat it; default: the three terminal ones)",
    ),
]


def _run(call: Callable[[Client], dict[str, Any]], fields: tuple[str, ...] = ()) -> None:
    try:
        with client() as api:
            show(call(api), fields)
    except ApiError as exc:
        raise fail(exc) from exc


def _endpoint(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "events": ", ".join(data.get("events") or [])} if not opts.json else data


@app.command()
def create(
    url: Annotated[str, typer.Argument(help="https URL of your receiver")],
    event: EventsOption = None,
    description: Annotated[str | None, typer.Option(help="a note for yourself")] = None,
) -> None:
    """Register an endpoint; prints its secret (whsec_…), shown this once."""
    _run(lambda api: _endpoint(api.webhook_create(url, event, description)), ENDPOINT_FIELDS)
    if not opts.json:
        out.print("keep the secret: it is not shown again (`rotate` makes a new one)")


@app.command(name="list")
def list_() -> None:
    """Your endpoints."""
    try:
        with client() as api:
            page = api.webhook_list()
    except ApiError as exc:
        raise fail(exc) from exc
    if opts.json:
        out.print_json(json.dumps(page))
        return
    table = Table("id", "url", "events", "enabled", "disabled because")
    for item in page["items"]:
        table.add_row(
            item["id"], item["url"], ", ".join(item["events"]),
            "yes" if item["enabled"] else "no", item.get("disabledReason") or "",
        )  # fmt: skip
    out.print(table)


@app.command()
def get(endpoint_id: str) -> None:
    """One endpoint."""
    _run(lambda api: _endpoint(api.webhook_get(endpoint_id)), ENDPOINT_FIELDS)


@app.command()
def update(
    endpoint_id: str,
    url: Annotated[str | None, typer.Option(help="a new URL")] = None,
    event: EventsOption = None,
    description: Annotated[str | None, typer.Option()] = None,
    enabled: Annotated[
        bool | None,
        typer.Option(
            "--enable/--disable",
            help="re-enable a disabled endpoint (the deliveries that waited go), or pause it",
        ),
    ] = None,
) -> None:
    """Change an endpoint's URL, events, description or state."""
    changes = {"url": url, "events": event, "description": description, "enabled": enabled}
    if all(v is None for v in changes.values()):
        raise typer.BadParameter(
            "nothing to change: give --url, --event, --description or --enable"
        )
    _run(lambda api: _endpoint(api.webhook_update(endpoint_id, **changes)), ENDPOINT_FIELDS)


@app.command()
def delete(endpoint_id: str) -> None:
    """Delete an endpoint (its pending deliveries go with it)."""
    try:
        with client() as api:
            api.webhook_delete(endpoint_id)
    except ApiError as exc:
        raise fail(exc) from exc
    out.print(f"deleted {endpoint_id}")


@app.command()
def rotate(
    endpoint_id: str,
    overlap: Annotated[
        int | None,
        typer.Option(min=0, help="seconds the previous secret still signs (default: a day)"),
    ] = None,
) -> None:
    """A new secret; during the overlap every delivery carries both signatures."""
    _run(
        lambda api: api.webhook_rotate(endpoint_id, overlap), ("secret", "previousSecretExpiresAt")
    )


@app.command()
def ping(endpoint_id: str) -> None:
    """Send a webhook.ping now (then see it with `deliveries`)."""
    _run(lambda api: api.webhook_ping(endpoint_id), ("deliveryId",))


@app.command()
def deliveries(
    endpoint_id: str,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="nextCursor of the previous page")] = None,
) -> None:
    """The delivery log, newest first: status, attempts (code, latency, error), next attempt."""
    try:
        with client() as api:
            page = api.webhook_deliveries(endpoint_id, limit, cursor)
    except ApiError as exc:
        raise fail(exc) from exc
    if opts.json:
        out.print_json(json.dumps(page))
        return
    table = Table("delivery", "event", "generation", "status", "attempts", "last answer", "next")
    for item in page["items"]:
        attempts = item["attempts"]
        last = attempts[-1] if attempts else None
        answer = ""
        if last is not None:
            answer = str(last["statusCode"] or "") + (f" {last['error']}" if last["error"] else "")
            if last["latencyMs"] is not None:
                answer += f" ({last['latencyMs']} ms)"
        table.add_row(
            item["id"], item["eventType"], item.get("generationId") or "", item["status"],
            str(len(attempts)), answer.strip(), (item.get("nextAttemptAt") or "")[:19],
        )  # fmt: skip
    out.print(table)
    if page.get("nextCursor"):
        out.print(f"more: --cursor {page['nextCursor']}")


@app.command()
def redeliver(endpoint_id: str, delivery_id: str) -> None:
    """Send a delivery's message again, with the same webhook-id."""
    _run(lambda api: api.webhook_redeliver(endpoint_id, delivery_id), ("deliveryId",))


@app.command(name="signing-key")
def signing_key() -> None:
    """The deployment's public key (whpk_…) that verifies the v1a signatures."""
    _run(lambda api: api.webhook_signing_key(), ("publicKey",))
