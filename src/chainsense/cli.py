"""The ``chainsense`` command line: the same services as the API, for a terminal.

Exit codes: 0 success, 1 a check failed (verify mismatch, audit finding), 2 a usage or
configuration error, 3 the chain could not be reached or reverted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from chainsense.ai_cli import anomalies
from chainsense.config import Settings
from chainsense.demo_cli import demo_command
from chainsense.device.cli import device_app
from chainsense.errors import ChainError, ChainSenseError, ConfigError
from chainsense.market_agent_cli import agent_app
from chainsense.proof_cli import export, proof_app
from chainsense.provenance_cli import verify_command
from chainsense.settlement_cli import charging_app, market_app, shipment_app

T = TypeVar("T")

app = typer.Typer(
    help="ChainSense: signed IoT readings, anchored on an EVM chain, provable to anyone.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
chain_app = typer.Typer(help="The chain ChainSense anchors to.", no_args_is_help=True)
contracts_app = typer.Typer(help="Deploy, verify and audit the contracts.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for operators (hashed at rest).", no_args_is_help=True)
app.add_typer(chain_app, name="chain")
app.add_typer(contracts_app, name="contracts")
app.add_typer(apikey_app, name="apikey")
app.add_typer(device_app, name="device")
app.add_typer(proof_app, name="proof")
app.add_typer(shipment_app, name="shipment")
app.add_typer(market_app, name="market")
market_app.add_typer(agent_app, name="agent")
app.add_typer(charging_app, name="charging")
app.command("export")(export)
app.command("verify")(verify_command)
app.command("anomalies")(anomalies)
app.command("demo")(demo_command)

RpcOption = Annotated[
    str | None,
    typer.Option("--rpc", help="JSON-RPC URL (default: CHAINSENSE_RPC_URL, else the dev chain)."),
]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning ChainSense errors into a one-line message and an exit code."""
    try:
        return asyncio.run(coro)
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    except ChainError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(3) from exc
    except ChainSenseError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc


def _settings(rpc: str | None = None) -> Settings:
    settings = Settings()
    if rpc is not None:
        settings = settings.model_copy(update={"rpc_url": rpc})
    return settings


def _dev_rpc_url(settings: Settings) -> str:
    return settings.rpc_url or f"http://{settings.anvil_host}:{settings.anvil_port}"


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
) -> None:
    """Serve the API and the dashboard (starting the dev chain when no RPC URL is set)."""
    import uvicorn

    from chainsense.api import create_app

    settings = Settings()
    host = host or settings.host
    port = port or settings.port
    typer.echo(f"ChainSense on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    if settings.uses_dev_chain:
        typer.echo(f"dev chain: Anvil on {_dev_rpc_url(settings)}, state in {settings.chain_dir}")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


# --- chain ---------------------------------------------------------------------------------


@chain_app.command("up")
def chain_up() -> None:
    """Start the local dev chain, deploy the contracts on first start, and wait for Ctrl-C."""
    from chainsense.chain.runtime import open_chain

    settings = _settings()
    if not settings.uses_dev_chain:
        typer.secho("error: CHAINSENSE_RPC_URL is set; `chain up` runs the local dev chain only",
                    fg="red", err=True)  # fmt: skip
        raise typer.Exit(2)

    async def up() -> None:
        async with open_chain(settings) as chain:
            dep = chain.deployment
            state = "deployed now" if chain.deployed_now else "found from an earlier start"
            typer.echo(f"dev chain {dep.chain_id} on {chain.client.rpc_url} (contracts {state})")
            for name, c in dep.contracts.items():
                typer.echo(f"  {name:15} {c.address}")
            typer.echo(f"state: {settings.chain_dir / 'state.json'}; Ctrl-C stops and saves")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            typer.echo("stopping: saving chain state")

    _run(up())


@chain_app.command("status")
def chain_status(rpc: RpcOption = None) -> None:
    """Show the chain, its head block and whether the recorded contracts are there."""
    from chainsense.chain import ChainClient, DeploymentStore, verify_deployment

    settings = _settings(rpc)

    async def status() -> bool:
        url = _dev_rpc_url(settings)
        async with await ChainClient.connect(url, timeout=settings.rpc_timeout, retries=1) as c:
            chain_id = await c.chain_id()
            typer.echo(f"rpc:         {url}")
            typer.echo(f"chain id:    {chain_id}")
            typer.echo(f"head block:  {await c.block_number()}")
            store = DeploymentStore(settings.deployments_dir)
            dep = store.load(chain_id)
            if dep is None:
                typer.echo(f"deployment:  none recorded in {store.path(chain_id)}")
                return False
            typer.echo(f"deployment:  {store.path(chain_id)} ({dep.deployed_at})")
            checks = await verify_deployment(c, dep)
            for check in checks:
                mark = "ok " if check.match else "BAD"
                typer.echo(f"  {mark} {check.contract:15} {check.address}  {check.detail}")
            return all(check.match for check in checks)

    if not _run(status()):
        raise typer.Exit(1)


# --- contracts -----------------------------------------------------------------------------


@contracts_app.command("deploy")
def contracts_deploy(
    rpc: RpcOption = None,
    operator: Annotated[
        str | None, typer.Option(help="Operator address (default: CHAINSENSE_OPERATOR_KEY's).")
    ] = None,
    anchorer: Annotated[
        str | None, typer.Option(help="Anchorer address (default: CHAINSENSE_ANCHORER_KEY's).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Deploy even if a deployment is recorded.")] = False,
) -> None:
    """Deploy DeviceRegistry, ReadingAnchor and the settlement contracts to any EVM endpoint.

    Settlement is paid in CHAINSENSE_PAYMENT_TOKEN (an ERC-20 address); unset, a TestStablecoin is
    deployed. The escrow's oracle is the operator.

    The deployer key comes from CHAINSENSE_DEPLOYER_KEY (on the dev chain it defaults to the public
    Anvil dev key 0). The deployment is recorded in <data dir>/deployments/<chain id>.json.
    """
    from eth_account import Account

    from chainsense.chain import (
        ChainClient,
        DeploymentStore,
        Signer,
        deploy_core,
        deploy_settlement,
    )
    from chainsense.chain.runtime import role_keys, settlement_params

    settings = _settings(rpc)

    async def deploy() -> None:
        keys = role_keys(settings)
        url = _dev_rpc_url(settings)
        async with await ChainClient.connect(
            url, timeout=settings.rpc_timeout, retries=settings.rpc_retries
        ) as client:
            store = DeploymentStore(settings.deployments_dir)
            chain_id = await client.chain_id()
            if store.load(chain_id) is not None and not force:
                raise ConfigError(
                    f"a deployment for chain {chain_id} is already recorded in "
                    f"{store.path(chain_id)}; pass --force to deploy a new one"
                )
            deployer = Signer(client, keys.deployer)
            typer.echo(f"deploying to chain {chain_id} at {url} from {deployer.address} …")
            operator_address = operator or Account.from_key(keys.operator).address
            core = await deploy_core(
                client,
                deployer,
                admin=deployer.address,
                operator=operator_address,
                anchorer=anchorer or Account.from_key(keys.anchorer).address,
            )
            dep = await deploy_settlement(
                client, deployer, core, oracle=operator_address, params=settlement_params(settings)
            )
            path = store.save(dep)
            for name, c in dep.contracts.items():
                typer.echo(f"  {name:15} {c.address}  tx {c.tx_hash}")
            typer.echo(f"recorded in {path}")

    _run(deploy())


@contracts_app.command("verify")
def contracts_verify(
    rpc: RpcOption = None,
    artifacts: Annotated[
        Path | None,
        typer.Option(help="Directory of artifact JSON files to compare (default: the shipped)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Compare the runtime bytecode on chain with the artifacts, as an explorer's verification
    does. Exits 1 on any mismatch."""
    from chainsense.chain import ChainClient, DeploymentStore, check_bytecode
    from chainsense.contracts import load_artifact, load_artifact_file

    settings = _settings(rpc)

    async def verify() -> bool:
        url = _dev_rpc_url(settings)
        async with await ChainClient.connect(url, timeout=settings.rpc_timeout) as client:
            chain_id = await client.chain_id()
            store = DeploymentStore(settings.deployments_dir)
            dep = store.load(chain_id)
            if dep is None:
                raise ConfigError(
                    f"no deployment recorded for chain {chain_id} in {store.path(chain_id)}"
                )
            results = []
            for name, deployed in dep.contracts.items():
                artifact = (
                    load_artifact_file(artifacts / f"{name}.json")
                    if artifacts
                    else load_artifact(name)
                )
                results.append(await check_bytecode(client, name, deployed.address, artifact))
            if as_json:
                typer.echo(json.dumps([r.__dict__ for r in results], indent=2))
            else:
                for r in results:
                    verdict = "match" if r.match else "MISMATCH"
                    typer.echo(f"{verdict:8} {r.contract:15} {r.address}  {r.detail}")
            return all(r.match for r in results)

    if not _run(verify()):
        raise typer.Exit(1)


@contracts_app.command("deployment")
def contracts_deployment(
    rpc: RpcOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the document here (default: stdout).")
    ] = None,
) -> None:
    """Print the published deployment document (chain id, addresses, runtime code hashes,
    artifact hashes): what verifiers pin proofs to (`chainsense verify --deployment FILE`)."""
    from chainsense.chain import ChainClient, DeploymentStore
    from chainsense.chain.deploy import published_deployment

    settings = _settings(rpc)

    async def publish() -> dict[str, Any]:
        url = _dev_rpc_url(settings)
        async with await ChainClient.connect(url, timeout=settings.rpc_timeout) as client:
            chain_id = await client.chain_id()
            store = DeploymentStore(settings.deployments_dir)
            dep = store.load(chain_id)
            if dep is None:
                raise ConfigError(
                    f"no deployment recorded for chain {chain_id} in {store.path(chain_id)}"
                )
            return await published_deployment(client, dep)

    text = json.dumps(_run(publish()), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote the deployment document to {out}", err=True)


@contracts_app.command("audit")
def contracts_audit() -> None:
    """Run Slither over the project's contracts (needs a ChainSense checkout with node_modules).
    Exits 1 when a high or medium finding has no recorded reason."""
    from chainsense.contracts.audit import run_audit

    try:
        code = run_audit(repo_root=Path.cwd())
    except ChainSenseError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(code)


# --- API keys ------------------------------------------------------------------------------


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scope: Annotated[
        str, typer.Option(help="admin, operator (register/revoke devices) or reader.")
    ] = "reader",
) -> None:
    """Create an API key. The key is printed once; only its hash is stored."""
    from chainsense.store import Store

    if scope not in ("admin", "operator", "reader"):
        typer.secho("error: --scope must be admin, operator or reader", fg="red", err=True)
        raise typer.Exit(2)
    settings = _settings()

    async def create() -> str:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = await Store.open(settings.store_url)
        try:
            record, key = await store.api_keys.create(name=name, scope=scope)
        finally:
            await store.close()
        typer.echo(
            f"created {record.scope} key #{record.id} {record.name!r} ({record.prefix})", err=True
        )
        return key

    typer.echo(_run(create()))


@apikey_app.command("list")
def apikey_list() -> None:
    """List API keys (never the keys themselves)."""
    from chainsense.store import Store

    settings = _settings()

    async def list_keys() -> None:
        store = await Store.open(settings.store_url)
        try:
            for k in await store.api_keys.list():
                state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
                typer.echo(f"#{k.id:<4} {k.scope:9} {k.prefix:14} {state:18} {k.name}")
        finally:
            await store.close()

    _run(list_keys())


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[int, typer.Argument(help="The key's number (#).")]) -> None:
    """Revoke an API key."""
    from chainsense.store import Store

    settings = _settings()

    async def revoke() -> bool:
        store = await Store.open(settings.store_url)
        try:
            return await store.api_keys.revoke(key_id)
        finally:
            await store.close()

    if not _run(revoke()):
        typer.secho(f"error: no active key #{key_id}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked key #{key_id}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
