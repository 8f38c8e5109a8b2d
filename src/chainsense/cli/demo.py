"""``chainsense demo``: the scripted scenario on a fresh platform of its own."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chainsense.errors import ChainSenseError

if TYPE_CHECKING:
    from chainsense.config import Settings
    from chainsense.demo import DemoResult

__all__ = ["demo_command", "run_demo"]

DEMO_MAX_FUTURE_MS = 6 * 3_600_000
"""The demo advances the dev chain's clock by about two hours (contract windows) and its
devices stamp readings with the chain's clock, so the server accepts timestamps that far ahead."""


def demo_settings(data_dir: Path) -> Settings:
    """Embedded defaults in ``data_dir``, on a dev chain of its own (free port)."""
    from chainsense.api.embedded import _free_port
    from chainsense.config import Settings

    return Settings(
        data_dir=data_dir,
        rpc_url=None,
        database_url=None,
        anvil_port=_free_port("127.0.0.1"),
        max_future_ms=DEMO_MAX_FUTURE_MS,
        registry_poll_interval=0.25,
        market_agent=False,  # the story places home C's forecast bid itself, for one interval
    )


async def run_demo(settings: Settings) -> DemoResult:
    import httpx

    from chainsense.api.embedded import serve_embedded
    from chainsense.demo import run_scenario

    def echo(line: str) -> None:
        typer.echo(line)

    async with serve_embedded(settings) as (url, platform):
        _, key = await platform.store.api_keys.create(name="demo", scope="operator")
        echo(f"ChainSense demo: API {url} (docs {url}/docs), data in {settings.data_dir}")
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            return await run_scenario(http, platform.chain.client, platform.chain.deployment, echo)


def demo_command(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data dir of the demo platform (default: a fresh temporary one)."),
    ] = None,
) -> None:
    """Run the scripted scenario (trucks, homes, charger, machine) on a fresh platform."""
    directory = data_dir or Path(tempfile.mkdtemp(prefix="chainsense-demo-"))
    try:
        result = asyncio.run(run_demo(demo_settings(directory)))
    except ChainSenseError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    if not result.all_proofs_ok:
        raise typer.Exit(1)
