"""Opening the chain side of ChainSense from settings: the dev chain (if no RPC URL), the client,
the role signers, and the deployment (deployed on first start)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account

from chainsense.chain.breaker import BreakerState, CircuitBreaker
from chainsense.chain.client import ChainClient, Signer
from chainsense.chain.deploy import (
    Deployment,
    DeploymentStore,
    SettlementParams,
    ensure_deployed,
)
from chainsense.chain.devchain import DUMP_REPORT, DevChain
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.config import Settings
from chainsense.errors import ConfigError
from chainsense.redact import redact_url

__all__ = [
    "ChainContext",
    "RoleKeys",
    "open_chain",
    "role_keys",
    "rpc_breaker",
    "settlement_params",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoleKeys:
    deployer: str
    operator: str
    anchorer: str


def role_keys(settings: Settings) -> RoleKeys:
    """The keys of the three platform roles. On the dev chain, unset keys default to the public
    Anvil development keys 0, 1 and 2; on any other chain they must come from the environment."""
    keys = {
        "deployer": settings.deployer_key,
        "operator": settings.operator_key,
        "anchorer": settings.anchorer_key,
    }
    resolved: dict[str, str] = {}
    for index, (role, secret) in enumerate(keys.items()):
        if secret is not None:
            resolved[role] = secret.get_secret_value()
        elif settings.uses_dev_chain:
            resolved[role] = ANVIL_DEV_KEYS[index]
        else:
            raise ConfigError(
                f"CHAINSENSE_{role.upper()}_KEY is not set; it is required when "
                "CHAINSENSE_RPC_URL points at an external chain"
            )
    return RoleKeys(**resolved)


def nonce_lock(settings: Settings, key: str) -> Path:
    """The lock file through which this host's processes take turns sending with ``key``."""
    return settings.data_dir / "locks" / f"nonce-{Account.from_key(key).address.lower()}.lock"


def anchorer_shares_a_key(keys: RoleKeys) -> bool:
    """Whether the anchorer's key is also the operator's or the deployer's (then it takes turns
    with them too)."""
    address = Account.from_key(keys.anchorer).address
    return address in {Account.from_key(k).address for k in (keys.operator, keys.deployer)}


def settlement_params(settings: Settings) -> SettlementParams:
    """The settlement contracts' constructor parameters from settings."""
    return SettlementParams(
        token=settings.payment_token,
        challenge_period=settings.escrow_challenge_period,
        report_timeout=settings.escrow_report_timeout,
        market_interval=settings.market_interval,
        market_settlement_period=settings.market_settlement_period,
        session_timeout=settings.charging_session_timeout,
    )


def rpc_breaker(settings: Settings, url: str) -> CircuitBreaker:
    """The RPC circuit breaker from settings; its transitions are logged and in the metrics
    (``chainsense_chain_rpc_circuit_state``, ``chainsense_chain_rpc_short_circuited_total``)."""
    from chainsense.observability.metrics import record_rpc_circuit, record_rpc_short_circuit

    def changed(state: BreakerState, last_error: str | None) -> None:
        record_rpc_circuit(state.value)
        if state is BreakerState.OPEN:
            log.warning(
                "chain RPC circuit open: calls to %s fail at once for %g s (last error: %s)",
                url,
                settings.rpc_breaker_cooldown,
                last_error,
            )
        elif state is BreakerState.CLOSED:
            log.info("chain RPC circuit closed: %s answers again", url)

    record_rpc_circuit(BreakerState.CLOSED.value)
    return CircuitBreaker(
        failures=settings.rpc_breaker_failures,
        cooldown=settings.rpc_breaker_cooldown,
        on_change=changed,
        on_refuse=record_rpc_short_circuit,
    )


@dataclass
class ChainContext:
    """Everything the platform needs from the chain, opened once per process."""

    client: ChainClient
    deployment: Deployment
    deployer: Signer
    operator: Signer
    anchorer: Signer
    devchain: DevChain | None
    deployed_now: bool


@asynccontextmanager
async def open_chain(
    settings: Settings, *, report_dumps: bool = False
) -> AsyncIterator[ChainContext]:
    """Connect to the chain and find the contracts.

    With no RPC URL, start the dev chain and deploy the contracts on first start (or again, if the
    dev chain lost them). With an RPC URL, use the deployment recorded for that chain id, which
    ``chainsense contracts deploy`` writes: nothing is deployed to a real chain implicitly.
    Stops the dev chain on exit. With ``report_dumps`` the dev chain writes how its state
    saves go to ``dumps.json`` in its directory, for processes that use it without running it."""
    keys = role_keys(settings)
    async with AsyncExitStack() as stack:
        devchain: DevChain | None = None
        if settings.rpc_url is None:
            devchain = DevChain(
                state_dir=settings.chain_dir,
                host=settings.anvil_host,
                port=settings.anvil_port,
                chain_id=settings.anvil_chain_id,
                state_interval=settings.anvil_state_interval,
                anvil_bin=settings.anvil_bin,
                report_file=settings.chain_dir / DUMP_REPORT if report_dumps else None,
            )
            await devchain.start()
            stack.push_async_callback(devchain.stop)
            rpc_url = devchain.rpc_url
        else:
            rpc_url = settings.rpc_url
        client = await ChainClient.connect(
            rpc_url,
            timeout=settings.rpc_timeout,
            retries=settings.rpc_retries,
            breaker=rpc_breaker(settings, redact_url(rpc_url)),
        )
        stack.push_async_callback(client.close)
        # Every `serve --workers` worker sends registrations with the operator key: they take
        # turns through a lock file in the data dir they share. The anchorer key is the leader's
        # alone, and keeps its nonces in memory (no extra round trip per anchoring round).
        deployer = Signer(client, keys.deployer, host_lock=nonce_lock(settings, keys.deployer))
        operator = Signer(client, keys.operator, host_lock=nonce_lock(settings, keys.operator))
        shared = anchorer_shares_a_key(keys)
        anchorer = Signer(
            client, keys.anchorer, host_lock=nonce_lock(settings, keys.anchorer) if shared else None
        )
        store = DeploymentStore(settings.deployments_dir)
        if devchain is not None:
            deployment, deployed_now = await ensure_deployed(
                client,
                deployer,
                store,
                operator=operator.address,
                anchorer=anchorer.address,
                redeploy_if_missing=True,
                oracle=operator.address,  # the platform's operator key reports deliveries
                settlement=settlement_params(settings),
                # Every public Anvil dev account gets test money for the demo.
                fund=()
                if settings.payment_token
                else tuple(Account.from_key(k).address for k in ANVIL_DEV_KEYS),
            )
        else:
            chain_id = await client.chain_id()
            found = store.load(chain_id)
            if found is None:
                raise ConfigError(
                    f"no deployment recorded for chain {chain_id} in {settings.deployments_dir}; "
                    f"run `chainsense contracts deploy --rpc {redact_url(rpc_url)}` first"
                )
            deployment, deployed_now = found, False
        if deployed_now:
            log.info("contracts deployed on chain %s", deployment.chain_id)
        yield ChainContext(
            client=client,
            deployment=deployment,
            deployer=deployer,
            operator=operator,
            anchorer=anchorer,
            devchain=devchain,
            deployed_now=deployed_now,
        )
