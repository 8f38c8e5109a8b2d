"""Small helpers shared by test packages."""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chainsense.chain import ChainClient, Deployment, DeploymentStore, DevChain, Signer

__all__ = [
    "DeployedChain",
    "admin_sql",
    "deployed_chain",
    "ensure_postgres",
    "free_port",
    "temp_postgres_database",
]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_LOW = _ephemeral_low()
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses right now, below the kernel's ephemeral range,
    and not handed out before by this process.

    A port the kernel picks for ``bind(0)`` comes from the range it also gives the local side
    of outgoing connections, so between this call and the server's bind any connection the
    suite opens could take it (CI failed so: "the dev chain's port 38465 on 127.0.0.1 is
    taken"). Ports below that range are only ever taken by a bind that names them.
    """
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, max(_EPHEMERAL_LOW, 20001))
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free TCP port below the ephemeral range in 1,000 tries")


POSTGRES_ADMIN_DSN = "postgresql://root@127.0.0.1:5432/postgres"
POSTGRES_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


async def _pg_try() -> Exception | None:
    import asyncpg  # type: ignore[import-untyped]

    try:
        conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return exc
    await conn.close()
    return None


def ensure_postgres() -> None:
    """Make sure the local PostgreSQL answers; start it with the machine's start command if not.
    Fails (never skips) when it cannot be reached: CI must run the PostgreSQL tests."""
    import asyncio
    import subprocess
    import time

    if asyncio.run(_pg_try()) is None:
        return
    subprocess.run(POSTGRES_START, shell=True, check=False, capture_output=True, timeout=60)
    deadline = time.monotonic() + 30
    while (error := asyncio.run(_pg_try())) is not None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL is not reachable and did not start: {error}")
        time.sleep(0.5)


async def admin_sql(sql: str) -> None:
    """Run one statement as the PostgreSQL admin (CREATE/DROP DATABASE)."""
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def temp_postgres_database(prefix: str = "chainsense_test") -> Iterator[str]:
    """Create a fresh database, yield its SQLAlchemy asyncpg URL, drop it afterwards."""
    import asyncio
    import secrets

    ensure_postgres()
    name = f"{prefix}_{secrets.token_hex(4)}"

    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://root@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class DeployedChain:
    devchain: DevChain
    client: ChainClient
    deployer: Signer
    operator: Signer
    anchorer: Signer
    deployment: Deployment
    store: DeploymentStore


@contextlib.asynccontextmanager
async def deployed_chain(base: Path) -> AsyncIterator[DeployedChain]:
    """A real Anvil on a free port with the core contracts deployed (roles: Anvil dev keys 0-2),
    stopped on exit."""
    from chainsense.chain import ChainClient, DeploymentStore, DevChain, Signer
    from chainsense.chain.deploy import ensure_deployed
    from chainsense.chain.devkeys import ANVIL_DEV_KEYS

    devchain = DevChain(state_dir=base / "anvil", port=free_port(), state_interval=3600)
    await devchain.start()
    try:
        client = await ChainClient.connect(devchain.rpc_url)
        try:
            deployer, operator, anchorer = (Signer(client, k) for k in ANVIL_DEV_KEYS[:3])
            store = DeploymentStore(base / "deployments")
            deployment, _ = await ensure_deployed(
                client, deployer, store, operator=operator.address, anchorer=anchorer.address
            )
            yield DeployedChain(devchain, client, deployer, operator, anchorer, deployment, store)
        finally:
            await client.close()
    finally:
        await devchain.stop()
