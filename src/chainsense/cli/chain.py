"""``chainsense chain`` and ``chainsense contracts``: the chain ChainSense anchors to, and its
contracts (deploy, compare the bytecode with the artifacts, audit)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Annotated

import typer

from chainsense.cli._common import JsonOption, RpcOption, echo_json, fail, run
from chainsense.cli._common import settings as _settings
from chainsense.errors import ChainSenseError, ConfigError
from chainsense.redact import redact_url

__all__ = ["chain_app", "contracts_app"]

chain_app = typer.Typer(help="The chain ChainSense anchors to.", no_args_is_help=True)
contracts_app = typer.Typer(help="Deploy, verify and audit the contracts.", no_args_is_help=True)


# --- chain ---------------------------------------------------------------------------------


@chain_app.command("up")
def chain_up() -> None:
    """Start the local dev chain, deploy the contracts on first start, and wait for Ctrl-C."""
    from chainsense.chain.runtime import open_chain

    settings = _settings()
    if not settings.uses_dev_chain:
        fail("CHAINSENSE_RPC_URL is set; `chain up` runs the local dev chain only (unset it)", 2)

    async def up() -> None:
        async with open_chain(settings, report_dumps=True) as chain:
            dep = chain.deployment
            state = "deployed now" if chain.deployed_now else "found from an earlier start"
            rpc = redact_url(chain.client.rpc_url)
            typer.echo(f"dev chain {dep.chain_id} on {rpc} (contracts {state})")
            for name, c in dep.contracts.items():
                typer.echo(f"  {name:15} {c.address}")
            typer.echo(f"state: {settings.chain_dir / 'state.json'}; Ctrl-C stops and saves")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            typer.echo("stopping: saving chain state")

    run(up())


@chain_app.command("status")
def chain_status(rpc: RpcOption = None, as_json: JsonOption = False) -> None:
    """Show the chain, its head block and whether the recorded contracts are there."""
    from chainsense.chain import ChainClient, DeploymentStore, verify_deployment

    settings = _settings(rpc)

    async def status() -> dict[str, object]:
        url = settings.dev_rpc_url
        async with await ChainClient.connect(url, timeout=settings.rpc_timeout, retries=1) as c:
            chain_id = await c.chain_id()
            store = DeploymentStore(settings.deployments_dir)
            dep = store.load(chain_id)
            found: dict[str, object] = {
                "rpc_url": redact_url(url),
                "chain_id": chain_id,
                "head_block": await c.block_number(),
                "deployment_record": str(store.path(chain_id)),
                "deployed_at": dep.deployed_at if dep else None,
                "contracts": [],
                "ok": False,
            }
            if dep is not None:
                checks = await verify_deployment(c, dep)
                found["contracts"] = [
                    {"contract": k.contract, "address": k.address, "match": k.match,
                     "detail": k.detail} for k in checks
                ]  # fmt: skip
                found["ok"] = all(check.match for check in checks)
            return found

    found = run(status())
    if as_json:
        echo_json(found)
    else:
        typer.echo(f"rpc:         {found['rpc_url']}")
        typer.echo(f"chain id:    {found['chain_id']}")
        typer.echo(f"head block:  {found['head_block']}")
        if found["deployed_at"] is None:
            typer.echo(f"deployment:  none recorded in {found['deployment_record']}")
        else:
            typer.echo(f"deployment:  {found['deployment_record']} ({found['deployed_at']})")
        for check in found["contracts"]:  # type: ignore[attr-defined]
            mark = "ok " if check["match"] else "BAD"
            typer.echo(f"  {mark} {check['contract']:15} {check['address']}  {check['detail']}")
    if not found["ok"]:
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
        url = settings.dev_rpc_url
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
            typer.echo(
                f"deploying to chain {chain_id} at {redact_url(url)} from {deployer.address} …"
            )
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

    run(deploy())


@contracts_app.command("verify")
def contracts_verify(
    rpc: RpcOption = None,
    artifacts: Annotated[
        Path | None,
        typer.Option(help="Directory of artifact JSON files to compare (default: the shipped)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Compare the runtime bytecode on chain with the artifacts, as an explorer's verification
    does. Exits 1 on any mismatch."""
    from chainsense.chain import ChainClient, DeploymentStore, check_bytecode
    from chainsense.contracts import load_artifact, load_artifact_file

    settings = _settings(rpc)

    async def verify() -> bool:
        url = settings.dev_rpc_url
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

    if not run(verify()):
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

    async def publish() -> dict[str, object]:
        url = settings.dev_rpc_url
        async with await ChainClient.connect(url, timeout=settings.rpc_timeout) as client:
            chain_id = await client.chain_id()
            store = DeploymentStore(settings.deployments_dir)
            dep = store.load(chain_id)
            if dep is None:
                raise ConfigError(
                    f"no deployment recorded for chain {chain_id} in {store.path(chain_id)}"
                )
            return await published_deployment(client, dep)

    text = json.dumps(run(publish()), indent=2) + "\n"
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
        fail(str(exc), 2)
    raise typer.Exit(code)
