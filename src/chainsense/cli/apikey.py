"""``chainsense apikey create|list|revoke``: operators' API keys.

With ``CHAINSENSE_API_KEY`` set (an admin key) they go through the platform's API
(``/v1/api-keys``, at ``CHAINSENSE_API_URL`` or ``CHAINSENSE_HOST:PORT``). Without it, or with
``--local``, they open the platform's database directly (``CHAINSENSE_DATA_DIR`` or
``CHAINSENSE_DATABASE_URL``): that is how the first admin key is made, on the server's machine,
before any key exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from chainsense.cli._common import (
    ApiOption,
    JsonOption,
    api_key,
    api_request,
    call,
    echo_json,
    fail,
)
from chainsense.cli._common import run as _run
from chainsense.cli._common import settings as _settings

if TYPE_CHECKING:
    from chainsense.config import Settings
    from chainsense.store import ApiKeyRecord

__all__ = ["apikey_app"]

apikey_app = typer.Typer(help="API keys for operators (hashed at rest).", no_args_is_help=True)

LocalOption = Annotated[
    bool,
    typer.Option(
        "--local",
        help="Open the platform's database directly (CHAINSENSE_DATA_DIR or "
        "CHAINSENSE_DATABASE_URL) instead of the API; the default without CHAINSENSE_API_KEY.",
    ),
]


def _use_local(local: bool) -> bool:
    return local or api_key(required=False) is None


def _through_api(settings: Settings, method: str, path: str, **kwargs: Any) -> Any:
    """One /v1/api-keys request; a refusal says how else to manage keys."""
    from chainsense.cli._common import PlatformError

    try:
        return api_request(settings, method, path, **kwargs)
    except PlatformError as exc:
        if exc.status == 403:
            raise PlatformError(403, f"{exc}; or pass --local on the server's machine") from None
        raise


def _record_json(k: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "scope": k.scope,
        "created_at": k.created_at.isoformat(),
        "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
    }


async def _local(settings: Settings, action: str, **kwargs: Any) -> Any:
    from chainsense.store import Store

    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(settings.store_url)
    try:
        if action == "create":
            record, key = await store.api_keys.create(**kwargs)
            return {**_record_json(record), "key": key}
        if action == "list":
            return [_record_json(k) for k in await store.api_keys.list()]
        return await store.api_keys.revoke(kwargs["key_id"])
    finally:
        await store.close()


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scope: Annotated[
        str, typer.Option(help="admin, operator (register/revoke devices) or reader.")
    ] = "reader",
    local: LocalOption = False,
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key. The key is printed once (alone on stdout); only its hash is stored."""
    if scope not in ("admin", "operator", "reader"):
        fail("--scope must be admin, operator or reader", 2)
    settings = _settings(api=api)
    if _use_local(local):
        created = _run(_local(settings, "create", name=name, scope=scope))
        from chainsense.redact import redact_url

        where = f"in the local database ({redact_url(settings.store_url.split('///')[-1])})"
    else:
        body = {"name": name, "scope": scope}
        created = call(lambda: _through_api(settings, "POST", "/v1/api-keys", json=body)).json()
        where = f"through {settings.client_api_url}"
    typer.echo(
        f"created {created['scope']} key #{created['id']} {created['name']!r} "
        f"({created['prefix']}) {where}",
        err=True,
    )
    if as_json:
        echo_json(created)
    else:
        typer.echo(created["key"])


@apikey_app.command("list")
def apikey_list(
    local: LocalOption = False, api: ApiOption = None, as_json: JsonOption = False
) -> None:
    """List API keys (never the keys themselves)."""
    settings = _settings(api=api)
    if _use_local(local):
        keys = _run(_local(settings, "list"))
    else:
        keys = call(lambda: _through_api(settings, "GET", "/v1/api-keys")).json()["items"]
    if as_json:
        echo_json(keys)
        return
    for k in keys:
        state = f"revoked {k['revoked_at'][:10]}" if k["revoked_at"] else "active"
        typer.echo(f"#{k['id']:<4} {k['scope']:9} {k['prefix']:14} {state:18} {k['name']}")


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's number (#).")],
    local: LocalOption = False,
    api: ApiOption = None,
) -> None:
    """Revoke an API key."""
    settings = _settings(api=api)
    if _use_local(local):
        if not _run(_local(settings, "revoke", key_id=key_id)):
            fail(f"no active key #{key_id}", 1)
    else:
        call(lambda: _through_api(settings, "POST", f"/v1/api-keys/{key_id}/revoke"))
    typer.echo(f"revoked key #{key_id}")
