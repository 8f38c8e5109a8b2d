"""``chainsense device``: make a device key, register it, send signed readings, inspect the buffer.

Secrets never travel as arguments: the keystore passphrase comes from
``CHAINSENSE_DEVICE_PASSPHRASE`` (or a prompt on a terminal), the operator API key from
``CHAINSENSE_API_KEY``. The API root is ``--api``, else ``CHAINSENSE_API_URL``, else
``CHAINSENSE_HOST``/``CHAINSENSE_PORT`` (the server's own settings), else the URL a running
``chainsense serve`` recorded in ``CHAINSENSE_DATA_DIR``.

Exit codes, as for the rest of the CLI: 0 success (readings buffered while the platform is down
count: they are safe), 1 the platform refused something (a reading, a registration), 2 a usage or
configuration error, 3 the platform could not be reached and nothing could be buffered instead
(``flush``: nothing could be delivered).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from chainsense.cli._common import JsonOption, address_arg, echo_json
from chainsense.cli._common import settings as _settings
from chainsense.errors import ChainSenseError, ConfigError

if TYPE_CHECKING:
    from chainsense.device.uplink import FlushReport
    from chainsense.identity import DeviceKey

__all__ = ["device_app"]

T = TypeVar("T")

PASSPHRASE_ENV = "CHAINSENSE_DEVICE_PASSPHRASE"
API_KEY_ENV = "CHAINSENSE_API_KEY"
DEFAULT_KEYSTORE = Path("device-key.json")

device_app = typer.Typer(
    help="Device keys, registration, and signed readings (buffered while the platform is down).",
    no_args_is_help=True,
)

KeystoreOption = Annotated[
    Path,
    typer.Option(
        "--keystore",
        "-k",
        envvar="CHAINSENSE_DEVICE_KEYSTORE",
        help="The device's encrypted key file.",
    ),
]
BufferOption = Annotated[
    Path | None,
    typer.Option(help="The device's offline buffer (default: <keystore>.buffer.sqlite)."),
]
ApiOption = Annotated[
    str | None,
    typer.Option(
        "--api",
        help="The platform's base URL (default: CHAINSENSE_API_URL, else "
        "http://CHAINSENSE_HOST:CHAINSENSE_PORT, where `chainsense serve` listens).",
    ),
]


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(code)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn ChainSense errors into a one-line message and an exit code."""
    from chainsense.device.errors import (
        OfflineBufferError,
        PlatformResponseError,
        PlatformUnreachableError,
    )
    from chainsense.identity import KeystoreError
    from chainsense.telemetry.schemas import UnknownSchemaError, ValueScaleError

    try:
        return asyncio.run(coro)
    except (ConfigError, KeystoreError, OfflineBufferError) as exc:
        raise _fail(str(exc), 2) from exc
    except (UnknownSchemaError, ValueScaleError) as exc:
        raise _fail(str(exc), 2) from exc
    except PlatformUnreachableError as exc:
        message = f"{exc}; start it with `chainsense serve`, or set CHAINSENSE_API_URL"
        raise _fail(message, 3) from exc
    except PlatformResponseError as exc:
        raise _fail(str(exc), 2 if exc.status in (401, 403) else 1) from exc
    except ChainSenseError as exc:
        raise _fail(str(exc), 1) from exc


def _buffer_path(keystore: Path, buffer: Path | None) -> Path:
    return buffer if buffer is not None else keystore.with_name(keystore.name + ".buffer.sqlite")


def _passphrase(*, confirm: bool = False) -> str:
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    if sys.stdin.isatty():
        entered: str = typer.prompt(
            "keystore passphrase", hide_input=True, confirmation_prompt=confirm
        )
        if entered:
            return entered
    raise ConfigError(f"set {PASSPHRASE_ENV} to the keystore passphrase")


def _api_key() -> str:
    value = os.environ.get(API_KEY_ENV)
    if not value:
        raise ConfigError(f"set {API_KEY_ENV} to an API key (operator scope to register or revoke)")
    return value


def _api_root(api: str | None) -> str:
    """The platform's base URL: ``--api``, else the settings (see the module docstring)."""
    return _settings(api=api).client_api_url


def _keystore_address(path: Path) -> str:
    """The address a V3 keystore declares in clear (no passphrase needed)."""
    from chainsense.identity import KeystoreError

    try:
        declared = json.loads(path.read_text(encoding="utf-8")).get("address")
    except OSError as exc:
        raise KeystoreError(path, f"cannot read: {exc.strerror or exc}") from None
    except (ValueError, AttributeError):
        raise KeystoreError(path, "not a keystore (JSON object) file") from None
    if not isinstance(declared, str):
        raise KeystoreError(path, "no address field; pass the ADDRESS instead")
    return "0x" + declared.removeprefix("0x")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _device_arg(text: str) -> str:
    return address_arg(text, "a device address")


async def _api(method: str, api: str | None, path: str, **kwargs: Any) -> Any:
    """One operator request to the platform; the answer's JSON, or a device error."""
    import httpx

    from chainsense.device.errors import PlatformResponseError, PlatformUnreachableError
    from chainsense.device.uplink import problem_text

    api = _api_root(api)
    url = f"{api}{path}"
    headers = {"Authorization": f"Bearer {_api_key()}"}
    # Registering and revoking send a chain transaction and wait for it.
    async with httpx.AsyncClient(timeout=180.0, headers=headers) as http:
        try:
            response = await http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise PlatformUnreachableError(api, str(exc) or type(exc).__name__) from None
    if response.status_code >= 500:
        raise PlatformUnreachableError(api, f"{response.status_code} {problem_text(response)}")
    if not response.is_success:  # the path is the API's, not a secret: only the base is redacted
        detail = f"{method} {path}: {problem_text(response)}"
        raise PlatformResponseError(api, response.status_code, detail)
    return response.json()


# --- keys and the registry ------------------------------------------------------------------


@device_app.command("new")
def new(keystore: KeystoreOption = DEFAULT_KEYSTORE) -> None:
    """Make a new device key and save it encrypted (passphrase: CHAINSENSE_DEVICE_PASSPHRASE)."""
    from chainsense.identity import DeviceKey

    async def make() -> DeviceKey:
        key = DeviceKey.generate()
        await asyncio.to_thread(key.save, keystore, _passphrase(confirm=True))
        return key

    key = _run(make())
    typer.echo(f"device address: {key.address}")
    typer.echo(f"keystore:       {keystore} (encrypted, mode 0600)")
    typer.echo(f"buffer:         {_buffer_path(keystore, None)} (made by the first send)")
    typer.echo(f"next:           chainsense device register --keystore {keystore}")


@device_app.command("register")
def register(
    address: Annotated[
        str | None, typer.Argument(help="Device address (default: the keystore's).")
    ] = None,
    keystore: KeystoreOption = DEFAULT_KEYSTORE,
    owner: Annotated[
        str | None, typer.Option(help="Owner address (default: the operator).")
    ] = None,
    metadata_hash: Annotated[
        str | None, typer.Option(help="0x + 64 hex: hash of off-chain metadata.")
    ] = None,
    api: ApiOption = None,
) -> None:
    """Register a device in the DeviceRegistry, through the API (key: CHAINSENSE_API_KEY)."""

    async def go() -> Any:
        body: dict[str, Any] = {"address": address or _keystore_address(keystore)}
        if owner:
            body["owner"] = owner
        if metadata_hash:
            body["metadata_hash"] = metadata_hash
        return await _api("POST", api, "/v1/devices", json=body)

    device = _run(go())
    typer.echo(f"registered {device['address']}")
    typer.echo(f"  did:    {device['did']}")
    typer.echo(f"  owner:  {device['owner']}")
    typer.echo(f"  status: {device['status']}  (tx {device.get('tx_hash')})")


@device_app.command("list")
def list_devices(
    status: Annotated[
        str | None, typer.Option(help="Only devices in this state: active, revoked, rotated.")
    ] = None,
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """List registered devices (any API key: CHAINSENSE_API_KEY)."""

    async def go() -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        while True:
            params = {"limit": "1000"}
            if status:
                params["status"] = status
            if cursor:
                params["cursor"] = cursor
            page = await _api("GET", api, "/v1/devices", params=params)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    devices = _run(go())
    if as_json:
        echo_json(devices)
        return
    if not devices:
        typer.echo("no devices")
        return
    typer.echo(f"{'address':42}  {'status':8}  {'last seq':>8}  registered")
    for d in devices:
        line = f"{d['address']:42}  {d['status']:8}  {d['last_seq']:>8}  {d['registered_at']}"
        typer.echo(line)


@device_app.command("revoke")
def revoke(address: str, api: ApiOption = None) -> None:
    """Revoke a device: its new readings are refused, its old ones stay verifiable."""
    device = _run(_api("POST", api, f"/v1/devices/{_device_arg(address)}/revoke"))
    typer.echo(f"revoked {device['address']} (tx {device.get('tx_hash')})")


@device_app.command("recommission")
def recommission(address: str, api: ApiOption = None, as_json: JsonOption = False) -> None:
    """After service: the AI layer learns the device afresh (a machine's next 400 readings
    are its new commissioning baseline) and its open alarms are cleared."""
    done = _run(_api("POST", api, f"/v1/devices/{_device_arg(address)}/recommission"))
    if as_json:
        echo_json(done)
        return
    cleared = done["alarms_cleared"]
    typer.echo(
        f"re-commissioned {done['device']}; alarms cleared: "
        + (", ".join(str(a) for a in cleared) if cleared else "none")
    )


# --- readings ---------------------------------------------------------------------------------


def _parse_values(pairs: list[str]) -> dict[str, Decimal | str | int]:
    values: dict[str, Decimal | str | int] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"--value expects NAME=NUMBER, got {pair!r}")
        if name.strip() in values:
            raise ConfigError(f"--value {name.strip()} is given twice")
        values[name.strip()] = value.strip()
    return values


def _report_flush(report: FlushReport, buffer: Path) -> None:
    if report.delivered:
        typer.echo(f"delivered: {report.stored} stored, {report.duplicates} already there")
    for rejected in report.rejected:
        typer.secho(f"seq {rejected.seq} rejected: {rejected.summary}", fg="red", err=True)
    if report.unreachable:
        typer.secho(
            f"{report.error}; {report.pending} readings buffered in {buffer} "
            "(safe: `chainsense device flush` delivers them)",
            fg="yellow",
            err=True,
        )
    elif report.error:
        typer.secho(f"error: {report.error}", fg="red", err=True)


@device_app.command("send")
def send(
    schema: Annotated[str, typer.Option(help="Schema name, e.g. chainsense.coldchain.v1.")],
    value: Annotated[
        list[str], typer.Option(help="NAME=NUMBER, once per metric (e.g. temperature=4.15).")
    ],
    keystore: KeystoreOption = DEFAULT_KEYSTORE,
    buffer: BufferOption = None,
    count: Annotated[int, typer.Option(min=1, help="How many readings to take.")] = 1,
    interval: Annotated[float, typer.Option(min=0, help="Seconds between readings.")] = 1.0,
    api: ApiOption = None,
    mqtt: Annotated[
        str | None,
        typer.Option(
            envvar="CHAINSENSE_DEVICE_MQTT_URL",
            help="Deliver over MQTT 5 through this broker (mqtt://user:pass@host:port), each "
            "reading kept until the platform's receipt says stored.",
        ),
    ] = None,
) -> None:
    """Sign readings, keep them in the buffer, and deliver them (with what was buffered
    before). When the platform is down the readings stay buffered, and the command exits 0."""
    from chainsense.device.buffer import OfflineBuffer
    from chainsense.device.client import DeviceClient
    from chainsense.identity import DeviceKey
    from chainsense.telemetry.schemas import BUILTIN_SCHEMAS, UnknownSchemaError

    try:
        values = _parse_values(value)
    except ConfigError as exc:
        raise _fail(str(exc), 2) from exc
    try:
        BUILTIN_SCHEMAS.by_name(schema)
    except UnknownSchemaError as exc:
        known = ", ".join(s.name for s in BUILTIN_SCHEMAS)
        raise _fail(f"{exc} (known: {known})", 2) from exc
    buffer_path = _buffer_path(keystore, buffer)
    api_root = _api_root(api)

    async def go() -> bool:
        key = await asyncio.to_thread(DeviceKey.load, keystore, _passphrase())
        failed = False
        with OfflineBuffer(buffer_path) as store:
            async with DeviceClient(api_root, key, store, mqtt=mqtt) as device:
                retries = device.uplink.retries
                start = time.monotonic()
                for i in range(count):
                    await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
                    reading = await device.record(schema, values)
                    typer.echo(f"seq {reading.seq} signed at {_iso(reading.timestamp)}")
                    report = await device.flush()
                    _report_flush(report, buffer_path)
                    # While the platform is down, probe it once per reading (no backoff), so
                    # the readings keep their cadence; back to full retries once it answers.
                    device.uplink.retries = 0 if report.unreachable else retries
                    if report.rejected or (report.error and not report.unreachable):
                        failed = True
        return failed

    if _run(go()):
        raise typer.Exit(1)


@device_app.command("flush")
def flush(
    keystore: KeystoreOption = DEFAULT_KEYSTORE,
    buffer: BufferOption = None,
    retry_rejected: Annotated[
        bool, typer.Option(help="Put rejected readings back in the queue first.")
    ] = False,
    api: ApiOption = None,
) -> None:
    """Deliver the buffered readings (no passphrase needed: they are signed already).
    Exits 3 when the platform is unreachable (the readings stay buffered)."""
    from chainsense.device.buffer import OfflineBuffer
    from chainsense.device.uplink import Uplink

    buffer_path = _buffer_path(keystore, buffer)
    if not buffer_path.exists():
        typer.echo(f"nothing to flush: no buffer at {buffer_path}")
        return

    async def go() -> FlushReport:
        with OfflineBuffer(buffer_path) as store:
            if retry_rejected:
                typer.echo(f"requeued {store.requeue_rejected()} rejected readings")
            async with Uplink(_api_root(api), store) as uplink:
                return await uplink.flush()

    report = _run(go())
    _report_flush(report, buffer_path)
    if report.complete and not report.delivered:
        typer.echo("nothing to flush")
    if report.unreachable:
        raise typer.Exit(3)
    if report.error or report.rejected:
        raise typer.Exit(1)


@device_app.command("status")
def status(
    keystore: KeystoreOption = DEFAULT_KEYSTORE,
    buffer: BufferOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the buffer: next seq, readings waiting, readings refused (no network needed)."""
    from chainsense.device.buffer import OfflineBuffer
    from chainsense.device.errors import OfflineBufferError

    buffer_path = _buffer_path(keystore, buffer)
    if not buffer_path.exists():
        if as_json:
            echo_json({"buffer": str(buffer_path), "exists": False})
        else:
            typer.echo(f"no buffer at {buffer_path}: nothing recorded yet")
        return

    def read() -> tuple[Any, list[Any]]:
        with OfflineBuffer(buffer_path) as store:
            return store.stats(), store.rejected(limit=10)

    try:
        stats, rejected = read()
    except OfflineBufferError as exc:
        raise _fail(str(exc), 2) from exc
    oldest = stats.oldest_pending
    if as_json:
        domain = stats.domain
        echo_json(
            {
                "buffer": str(buffer_path),
                "exists": True,
                "device": stats.device,
                "next_seq": stats.next_seq,
                "pending": stats.pending,
                "oldest_pending": {"seq": oldest.seq, "timestamp_ms": oldest.reading.timestamp}
                if oldest
                else None,
                "rejected": stats.rejected,
                "rejected_recent": [{"seq": r.seq, "summary": r.summary} for r in rejected],
                "domain": {
                    "chain_id": domain.chain_id,
                    "verifying_contract": domain.verifying_contract,
                }
                if domain is not None
                else None,
            }
        )
        return
    typer.echo(f"buffer:    {buffer_path}")
    typer.echo(f"device:    {stats.device or '(none yet)'}")
    typer.echo(f"next seq:  {stats.next_seq}")
    since = f" (oldest: seq {oldest.seq}, {_iso(oldest.reading.timestamp)})" if oldest else ""
    typer.echo(f"pending:   {stats.pending}{since}")
    typer.echo(f"rejected:  {stats.rejected}")
    for r in rejected:
        typer.echo(f"  seq {r.seq}: {r.summary}")
    if stats.domain is not None:
        typer.echo(
            f"domain:    chain {stats.domain.chain_id}, "
            f"DeviceRegistry {stats.domain.verifying_contract}"
        )
    else:
        typer.echo("domain:    not known yet (taken from the platform on first contact)")
