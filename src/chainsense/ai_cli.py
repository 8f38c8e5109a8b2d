"""``chainsense anomalies``: list the platform's anomaly events, or follow them live (SSE)."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer

from chainsense.errors import ConfigError

__all__ = ["anomalies"]

API_KEY_ENV = "CHAINSENSE_API_KEY"


def _line(e: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(e["timestamp"] / 1000, UTC).isoformat(timespec="seconds")
    return (
        f"#{e['id']} {when} {e['device']} {e['explanation']} score {e['score']:.2f} "
        f"reading {e['reading_id']}"
    )


def anomalies(
    device: Annotated[str | None, typer.Option(help="Only this device (address).")] = None,
    schema: Annotated[str | None, typer.Option(help="Only this schema (name or id).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Events to list.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Then stream new events.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    api: Annotated[
        str, typer.Option(envvar="CHAINSENSE_API_URL", help="The platform's base URL.")
    ] = "http://127.0.0.1:8000",
) -> None:
    """List anomaly events (oldest first); with --follow keep printing new ones."""
    key = os.environ.get(API_KEY_ENV)
    if not key:
        typer.secho(f"error: {ConfigError(f'set {API_KEY_ENV} to an API key')}", err=True)
        raise typer.Exit(2)
    params: dict[str, Any] = {"limit": limit}
    if device:
        params["device"] = device
    if schema:
        params["schema"] = schema
    show = (lambda e: json.dumps(e)) if as_json else _line
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=api, headers=headers, timeout=30.0) as http:
            response = http.get("/v1/anomalies", params=params)
            if not response.is_success:
                typer.secho(f"error: {response.status_code} {response.text}", err=True)
                raise typer.Exit(1)
            items = response.json()["items"]
            for e in items:
                typer.echo(show(e))
            if follow:
                params.pop("limit")
                params["after"] = items[-1]["id"] if items else 0
                asyncio.run(_follow(api, headers, params, show))
    except httpx.TransportError as exc:
        typer.secho(f"error: the platform at {api} is unreachable: {exc}", err=True)
        raise typer.Exit(3) from exc


async def _follow(api: str, headers: dict[str, str], params: dict[str, Any], show: Any) -> None:
    async with (
        httpx.AsyncClient(base_url=api, headers=headers, timeout=None) as http,
        http.stream("GET", "/v1/stream", params=params) as response,
    ):
        kind = "anomaly"
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "anomaly":
                typer.echo(show(json.loads(line[6:])))
