"""What every command module shares: settings, the platform's API, errors as one line + exit code.

Only light imports at module level (Typer and the error classes); settings (pydantic) and httpx
load when a command runs.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from chainsense.errors import ChainError, ChainSenseError, ConfigError

if TYPE_CHECKING:
    import httpx

    from chainsense.config import Settings

__all__ = [
    "API_KEY_ENV",
    "ApiOption",
    "JsonOption",
    "PlatformError",
    "PlatformUnreachable",
    "RpcOption",
    "api_download",
    "api_request",
    "call",
    "echo_json",
    "fail",
    "run",
    "settings",
]

T = TypeVar("T")

API_KEY_ENV = "CHAINSENSE_API_KEY"

RpcOption = Annotated[
    str | None,
    typer.Option("--rpc", help="JSON-RPC URL (default: CHAINSENSE_RPC_URL, else the dev chain)."),
]
ApiOption = Annotated[
    str | None,
    typer.Option(
        "--api",
        help="The platform's base URL (default: CHAINSENSE_API_URL, else "
        "http://CHAINSENSE_HOST:CHAINSENSE_PORT, where `chainsense serve` listens).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


class PlatformUnreachable(ChainSenseError):
    """The platform's API did not answer."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"the platform at {url} is unreachable ({reason}); start it with `chainsense serve`, "
            "or point CHAINSENSE_API_URL (or CHAINSENSE_HOST/CHAINSENSE_PORT) at it"
        )
        self.url = url


class PlatformError(ChainSenseError):
    """The platform answered with an error status."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` on one line to stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def exit_code(exc: ChainSenseError) -> int:
    """The exit code of an error (see :mod:`chainsense.cli`)."""
    if isinstance(exc, ConfigError):
        return 2
    if isinstance(exc, ChainError | PlatformUnreachable):
        return 3
    if isinstance(exc, PlatformError) and exc.status in (401, 403):
        return 2
    return 1


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning ChainSense errors into a one-line message and an exit code."""
    try:
        return asyncio.run(coro)
    except ChainSenseError as exc:
        fail(str(exc), exit_code(exc))


def call(func: Callable[[], T]) -> T:
    """Call a blocking function, turning ChainSense errors into one line and an exit code."""
    try:
        return func()
    except ChainSenseError as exc:
        fail(str(exc), exit_code(exc))


def settings(rpc: str | None = None, api: str | None = None) -> Settings:
    """The settings (``CHAINSENSE_*``), with a command's ``--rpc`` / ``--api`` applied."""
    from pydantic import ValidationError

    from chainsense.config import Settings

    try:
        found = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "CHAINSENSE_" + str(first["loc"][0]).upper() if first["loc"] else "a setting"
        fail(f"{name}: {first['msg']}", 2)
    update: dict[str, Any] = {}
    if rpc is not None:
        from chainsense.redact import install_log_redaction, url_secrets

        install_log_redaction(url_secrets(rpc))
        update["rpc_url"] = rpc
    if api is not None:
        update["api_url"] = api
    elif not ({"api_url", "host", "port"} & found.model_fields_set):
        served = running_server_url(found.data_dir)
        if served:
            update["api_url"] = served
    return found.model_copy(update=update) if update else found


def running_server_url(data_dir: Path) -> str | None:
    """The URL a ``chainsense serve`` running on this data dir recorded, if it still runs."""
    try:
        record = json.loads((data_dir / "server.json").read_text())
        os.kill(int(record["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    url = record.get("url")
    return url if isinstance(url, str) else None


def api_key(required: bool = True) -> str | None:
    value = os.environ.get(API_KEY_ENV)
    if not value and required:
        raise ConfigError(f"set {API_KEY_ENV} to an API key (`chainsense apikey create`)")
    return value or None


def problem_text(response: httpx.Response) -> str:
    """``title: detail`` of a problem+json body, or the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
        if parts:
            return ": ".join(parts)
    return f"{response.status_code} {response.reason_phrase}"


def _open_http(base_url: str, timeout: float) -> AbstractContextManager[httpx.Client]:
    import httpx

    return httpx.Client(base_url=base_url, timeout=timeout)


#: The seam through which :func:`api_request` gets its HTTP client: ``(base_url, timeout) ->``
#: a context manager yielding an ``httpx.Client``. Tests hand in the app's own ``TestClient``.
open_http: Callable[[str, float], AbstractContextManager[httpx.Client]] = _open_http


def api_request(
    cfg: Settings,
    method: str,
    path: str,
    *,
    key: str | None = None,
    ok: tuple[int, ...] = (),
    timeout: float = 60.0,
    **kwargs: Any,
) -> httpx.Response:
    """One request to the platform's API (``cfg.client_api_url``) with the API key from the
    environment; an error status raises :class:`PlatformError` unless it is in ``ok``."""
    import httpx

    base = cfg.client_api_url
    token = key if key is not None else api_key()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with open_http(base, timeout) as http:
            response = http.request(method, path, headers=headers, **kwargs)
    except httpx.TransportError as exc:
        raise PlatformUnreachable(base, str(exc) or type(exc).__name__) from None
    if response.is_success or response.status_code in ok:
        return response
    _raise_for(response, method, base, path)


def _raise_for(response: httpx.Response, method: str, base: str, path: str) -> NoReturn:
    detail = problem_text(response)
    if response.status_code == 401:
        detail += f" (set {API_KEY_ENV} to a valid key of this platform)"
    elif response.status_code == 403:
        detail += f" (set {API_KEY_ENV} to a key with that scope)"
    raise PlatformError(response.status_code, f"{method} {base}{path}: {detail}")


def api_download(
    cfg: Settings,
    path: str,
    dest: Path,
    *,
    params: dict[str, Any] | None = None,
    timeout: float = 60.0,
) -> int:
    """GET ``path`` from the platform's API and stream the body into ``dest`` (never held
    whole in memory); the bytes written. Errors as :func:`api_request`."""
    import httpx

    base = cfg.client_api_url
    token = api_key()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    written = 0
    answered = False
    try:
        with (
            open_http(base, timeout) as http,
            http.stream("GET", path, headers=headers, params=params) as response,
        ):
            answered = True
            if not response.is_success:
                response.read()
                _raise_for(response, "GET", base, path)
            with dest.open("wb") as f:
                for chunk in response.iter_bytes():
                    f.write(chunk)
                    written += len(chunk)
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        if not answered:
            raise PlatformUnreachable(base, reason) from None
        raise PlatformError(
            0,
            f"GET {base}{path}: the platform stopped sending after {written} bytes ({reason}); "
            "its log says why, export again",
        ) from None
    return written


def address_arg(text: str, what: str = "an address") -> str:
    """An address argument as a user types it (with or without ``0x``, any case; mixed case
    must be a correct EIP-55 checksum), checksummed; a usage error (exit 2) otherwise."""
    from chainsense.identity._address import checksum_address

    candidate = text if text[:2].lower() == "0x" else "0x" + text
    try:
        return checksum_address("0x" + candidate[2:])
    except ValueError as exc:
        raise typer.BadParameter(f"not {what}: {text!r} ({exc})") from None


def echo_json(value: Any) -> None:
    """Print a value as indented JSON (dates and other objects as strings)."""
    typer.echo(json.dumps(value, indent=2, default=str))
