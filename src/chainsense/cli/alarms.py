"""``chainsense alarms``: list alarms; ``alarms ack ID`` / ``alarms clear ID`` (through the API).

The platform's URL and API key come from :mod:`chainsense.cli._common` as for every command that
talks to a platform (``--api``, ``CHAINSENSE_API_URL``, ``CHAINSENSE_HOST``/``CHAINSENSE_PORT``,
the running server's record; ``CHAINSENSE_API_KEY``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from chainsense.cli._common import ApiOption, api_request, call, fail
from chainsense.cli._common import settings as _settings

__all__ = ["alarms_app"]

alarms_app = typer.Typer(
    help="Alarms: anomalies grouped per device, acknowledged and cleared.",
    invoke_without_command=True,
    no_args_is_help=False,
)

AlarmId = Annotated[int, typer.Argument(min=1, help="The alarm's id.")]


def _line(a: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(a["last_seen_ms"] / 1000, UTC).isoformat(timespec="seconds")
    ack = "acked" if a["acknowledged"] else "unacked"
    return (
        f"#{a['id']} {a['state']} {ack} {a['severity']} {when} {a['device']} "
        f"{','.join(a['metrics'])} ({a['check']}) x{a['count']}: {a['message']}"
    )


def _request(api: str | None, method: str, path: str, **kwargs: Any) -> Any:
    cfg = _settings(api=api)
    return call(lambda: api_request(cfg, method, path, timeout=30.0, **kwargs)).json()


@alarms_app.callback()
def alarms(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="active or cleared (default: both).")] = None,
    device: Annotated[str | None, typer.Option(help="Only this device (address).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Alarms to list.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    api: ApiOption = None,
) -> None:
    """List alarms, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    if state not in (None, "active", "cleared"):
        fail("--state must be active or cleared", 2)
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["state"] = state
    if device:
        params["device"] = device
    for a in _request(api, "GET", "/v1/alarms", params=params)["items"]:
        typer.echo(json.dumps(a) if as_json else _line(a))


@alarms_app.command("ack")
def ack(
    alarm_id: AlarmId,
    as_json: Annotated[bool, typer.Option("--json", help="Print the alarm as JSON.")] = False,
    api: ApiOption = None,
) -> None:
    """Acknowledge an alarm (needs an operator key)."""
    a = _request(api, "POST", f"/v1/alarms/{alarm_id}/ack")
    typer.echo(json.dumps(a) if as_json else _line(a))


@alarms_app.command("clear")
def clear(
    alarm_id: AlarmId,
    as_json: Annotated[bool, typer.Option("--json", help="Print the alarm as JSON.")] = False,
    api: ApiOption = None,
) -> None:
    """Clear an alarm (needs an operator key; clearing a cleared alarm changes nothing)."""
    a = _request(api, "POST", f"/v1/alarms/{alarm_id}/clear")
    typer.echo(json.dumps(a) if as_json else _line(a))
