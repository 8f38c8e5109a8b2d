"""``chainsense anomalies``: list the platform's anomaly events, or follow them live (SSE)."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from chainsense.cli._common import ApiOption, fail
from chainsense.cli._common import settings as _settings

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
    api: ApiOption = None,
) -> None:
    """List anomaly events (oldest first); with --follow keep printing new ones."""
    import httpx

    key = os.environ.get(API_KEY_ENV)
    if not key:
        fail(f"set {API_KEY_ENV} to an API key (`chainsense apikey create`)", 2)
    api = _settings(api=api).client_api_url
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
                fail(
                    f"{response.status_code} {response.text}",
                    2 if response.status_code in (401, 403) else 1,
                )
            items = response.json()["items"]
            for e in items:
                typer.echo(show(e))
            if follow:
                params.pop("limit")
                params["after"] = items[-1]["id"] if items else 0
                asyncio.run(_follow(api, headers, params, show))
    except httpx.TransportError as exc:
        fail(
            f"the platform at {api} is unreachable ({exc}); start it with `chainsense serve`, "
            "or point CHAINSENSE_API_URL (or CHAINSENSE_HOST/CHAINSENSE_PORT) at it",
            3,
        )


async def _follow(api: str, headers: dict[str, str], params: dict[str, Any], show: Any) -> None:
    import httpx

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
