"""``chainsense alarms``: list alarms; ``alarms ack ID`` / ``alarms clear ID`` (through the API).

Registered in the CLI with one line: ``app.add_typer(alarms_app, name="alarms")``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer

from chainsense.errors import ConfigError

__all__ = ["alarms_app"]

API_KEY_ENV = "CHAINSENSE_API_KEY"

alarms_app = typer.Typer(
    help="Alarms: anomalies grouped per device, acknowledged and cleared.",
    invoke_without_command=True,
    no_args_is_help=False,
)

ApiOption = Annotated[
    str, typer.Option(envvar="CHAINSENSE_API_URL", help="The platform's base URL.")
]


def _line(a: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(a["last_seen_ms"] / 1000, UTC).isoformat(timespec="seconds")
    ack = "acked" if a["acknowledged"] else "unacked"
    return (
        f"#{a['id']} {a['state']} {ack} {a['severity']} {when} {a['device']} "
        f"{','.join(a['metrics'])} ({a['check']}) x{a['count']}: {a['message']}"
    )


def _request(api: str, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
    key = os.environ.get(API_KEY_ENV)
    if not key:
        typer.secho(f"error: {ConfigError(f'set {API_KEY_ENV} to an API key')}", err=True)
        raise typer.Exit(2)
    try:
        with httpx.Client(
            base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=30.0
        ) as http:
            response = http.request(method, path, params=params)
    except httpx.TransportError as exc:
        typer.secho(f"error: the platform at {api} is unreachable: {exc}", err=True)
        raise typer.Exit(3) from exc
    if response.status_code == 404:
        typer.secho(f"error: {response.json().get('detail', 'not found')}", err=True)
        raise typer.Exit(1)
    if not response.is_success:
        typer.secho(f"error: {response.status_code} {response.text}", err=True)
        raise typer.Exit(1)
    return response.json()


@alarms_app.callback()
def alarms(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="active or cleared (default: both).")] = None,
    device: Annotated[str | None, typer.Option(help="Only this device (address).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Alarms to list.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    api: ApiOption = "http://127.0.0.1:8000",
) -> None:
    """List alarms, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    if state not in (None, "active", "cleared"):
        typer.secho("error: --state must be active or cleared", err=True)
        raise typer.Exit(2)
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["state"] = state
    if device:
        params["device"] = device
    for a in _request(api, "GET", "/v1/alarms", params)["items"]:
        typer.echo(json.dumps(a) if as_json else _line(a))


@alarms_app.command("ack")
def ack(
    alarm_id: Annotated[int, typer.Argument(min=1, help="The alarm's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the alarm as JSON.")] = False,
    api: ApiOption = "http://127.0.0.1:8000",
) -> None:
    """Acknowledge an alarm (needs an operator key)."""
    a = _request(api, "POST", f"/v1/alarms/{alarm_id}/ack")
    typer.echo(json.dumps(a) if as_json else _line(a))


@alarms_app.command("clear")
def clear(
    alarm_id: Annotated[int, typer.Argument(min=1, help="The alarm's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the alarm as JSON.")] = False,
    api: ApiOption = "http://127.0.0.1:8000",
) -> None:
    """Clear an alarm (needs an operator key; clearing a cleared alarm changes nothing)."""
    a = _request(api, "POST", f"/v1/alarms/{alarm_id}/clear")
    typer.echo(json.dumps(a) if as_json else _line(a))
