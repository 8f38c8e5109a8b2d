"""The running platform: every long-lived service, opened together and closed together.

The API lifespan and the CLI both use :func:`open_platform`, so they run the same services the
same way. Services are passed to what needs them; nothing is a global.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from chainsense.ai.livebus import PgLiveBus
from chainsense.ai.monitor import Rules, Sensitivity, Thresholds
from chainsense.ai.service import AIConfig, AIService
from chainsense.chain.reconcile import reconcile
from chainsense.chain.registry import DeviceState, RegistryView
from chainsense.chain.runtime import ChainContext, open_chain
from chainsense.config import Settings
from chainsense.identity import ReadingVerifier
from chainsense.observability.metrics import metrics
from chainsense.observability.sampler import sample_gauges
from chainsense.provenance.anchorer import Anchorer, AnchorPolicy
from chainsense.provenance.blockfetch import BlockEvidenceSource
from chainsense.provenance.export import ProofService
from chainsense.provenance.proof import DomainRef
from chainsense.settlement import open_settlement
from chainsense.settlement.agent import MarketAgent
from chainsense.store import DeviceRecord, DeviceStatus, Store
from chainsense.store.engine import parse_url
from chainsense.store.leader import Leadership
from chainsense.telemetry.committer import GroupCommitter
from chainsense.telemetry.ingest import IngestPipeline, IngestResult
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS, SchemaRegistry

__all__ = ["Platform", "anchor_policy", "open_platform", "registry_mirror"]

log = logging.getLogger(__name__)


@dataclass
class Platform:
    settings: Settings
    store: Store
    chain: ChainContext
    registry: RegistryView
    schemas: SchemaRegistry
    verifier: ReadingVerifier
    ingest: IngestPipeline
    anchorer: Anchorer
    proofs: ProofService
    market_agent: MarketAgent
    ai: AIService | None = None
    anchor_leader: Leadership | None = None
    """The anchorer's election (which process runs it, with several workers or hosts)."""
    ai_leader: Leadership | None = None
    """The AI worker's election, likewise (None: it runs in this process, if enabled)."""


@asynccontextmanager
async def open_platform(settings: Settings) -> AsyncIterator[Platform]:
    """Open the store and the chain, sync the device registry, and keep it synced."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        store = await Store.open(settings.store_url)
        stack.push_async_callback(store.close)
        chain = await stack.enter_async_context(open_chain(settings))
        registry_deployment = chain.deployment.contracts["DeviceRegistry"]

        registry = RegistryView(
            chain.client,
            registry_deployment.address,
            from_block=registry_deployment.block_number,
            poll_interval=settings.registry_poll_interval,
            on_change=registry_mirror(store),
        )
        await registry.sync()
        # a chain that lost what the store recorded (a dev chain restarted from an older state)
        await reconcile(store, registry, chain.client)
        await _start(stack, registry.run(), "registry-sync")
        # Singletons run once across every process on this database: one leader per role
        # (store/leader.py; PostgreSQL advisory locks; SQLite is one process anyway).
        leaders = _Leaders(store, settings)
        stack.push_async_callback(leaders.close)
        anchor_lead = leaders.role("anchorer")
        anchorer = Anchorer(
            store=store,
            client=chain.client,
            signer=chain.anchorer,
            contract=chain.deployment.contracts["ReadingAnchor"].address,
            policy=anchor_policy(settings),
            crash_at=settings.crash_at,
            fence=anchor_lead.fence,
        )
        if settings.anchoring:
            await _start(stack, anchor_lead.hold(anchorer.run), "anchorer")
        verifier = ReadingVerifier(chain.deployment.chain_id, registry_deployment.address)
        schemas = BUILTIN_SCHEMAS
        ingest = IngestPipeline(
            store=store,
            verifier=verifier,
            registry=registry,
            schemas=schemas,
            max_future_ms=settings.max_future_ms,
            committer=GroupCommitter(
                store.readings.insert_batch,
                max_rows=settings.commit_max_readings,
                window_s=settings.commit_window_ms / 1000,
                thread_writer=store.readings if store.readings.writes_in_thread() else None,
            ),
        )
        ai: AIService | None = None
        ai_lead: Leadership | None = None
        if settings.ai_enabled:
            ai = AIService(
                store=store,
                schemas=schemas,
                config=AIConfig(
                    thresholds=Thresholds(settings.ai_threshold, settings.ai_thresholds),
                    sensitivity=Sensitivity(
                        settings.ai_false_alarms_per_week, settings.ai_false_alarms
                    ),
                    rules=Rules(
                        settings.ai_hard_limits,
                        tuple(settings.ai_counters),
                        tuple(settings.ai_baseline_schemas),
                    ),
                    chunk=settings.ai_chunk,
                    poll_interval=settings.ai_poll_interval,
                    limits=settings.ai_limits,
                    process=settings.ai_process,
                ),
                publish=await _webhook(stack, settings),
            )
            ingest.on_stored = ai.notify
            if leaders.url is None:
                await ai.start()
                stack.push_async_callback(ai.stop)
            else:
                ai.follow_settings = True  # an API request may reach another worker
                ai.bus = bus = PgLiveBus(leaders.dsn, store, ai.deliver)
                await _start(stack, bus.run(), "live-bus")
                ai_lead = leaders.role("ai")
                await _start(stack, ai_lead.hold(_service_job(ai)), "ai")
        log.info(
            "platform ready: store %s, chain %s (contracts %s)",
            store.url,
            chain.deployment.chain_id,
            "deployed now" if chain.deployed_now else "found",
        )
        proofs = ProofService(
            store=store,
            schemas=schemas,
            domain=DomainRef(chain.deployment.chain_id, registry_deployment.address),
            policy=anchorer.policy,
            evidence=BlockEvidenceSource(chain.client),
            status=lambda: anchorer.state,
        )
        market_agent = MarketAgent(
            store=store,
            market=open_settlement(chain.client, chain.deployment).market,
            signer=chain.operator,
            poll_interval=settings.market_agent_poll_interval,
        )
        if settings.market_agent:
            await _start(stack, leaders.role("market-agent").hold(market_agent.run), "market-agent")
        platform = Platform(
            settings, store, chain, registry, schemas, verifier, ingest, anchorer, proofs,
            market_agent, ai, anchor_lead if settings.anchoring else None, ai_lead,
        )  # fmt: skip
        if settings.mqtt_url is not None and settings.mqtt_url.get_secret_value():
            from chainsense.mqtt import bridge_from_settings

            def ingest_mqtt(
                items: Sequence[Any], origins: Sequence[int]
            ) -> Awaitable[list[IngestResult]]:
                # counted in chainsense_readings_ingested_total{transport="mqtt"}
                return ingest.ingest(items, transport="mqtt", origins=origins)

            bridge = bridge_from_settings(settings, ingest_mqtt)
            await _start(stack, bridge.run(), "mqtt-bridge")
        if settings.demo_fleet:
            from chainsense.demo.live import stream_fleet

            fleet = leaders.role("demo-fleet")
            await _start(stack, fleet.hold(lambda: stream_fleet(platform)), "demo-fleet")
        metrics().leader.labels(role="registry-sync").set(1)  # every process keeps its view
        await _start(stack, sample_gauges(platform), "metrics-sampler")
        yield platform


def registry_mirror(store: Store) -> Callable[[Sequence[DeviceState]], Awaitable[None]]:
    """The registry view's listener that mirrors key states into ``store.devices``."""

    async def mirror(states: Sequence[DeviceState]) -> None:
        await store.devices.upsert_many(
            DeviceRecord(
                address=s.key,
                identity=s.device,
                owner=s.owner,
                metadata_hash=s.metadata_hash,
                status=DeviceStatus(s.status),
                registered_at=s.registered_at,
                revoked_at=s.revoked_at,
                last_seq=0,  # the store keeps the higher of this and what it has
            )
            for s in states
        )

    return mirror


class _Leaders:
    """The elections of this process, one per singleton role."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.url = None if store.dialect == "sqlite" else parse_url(settings.store_url)
        self._roles: dict[str, Leadership] = {}

    @property
    def dsn(self) -> str:
        """The PostgreSQL DSN for connections of their own (asyncpg)."""
        assert self.url is not None
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def role(self, name: str) -> Leadership:
        if name not in self._roles:
            metrics().leader.labels(role=name).set(0)
            self._roles[name] = Leadership(name, self.url, on_change=_leader_gauge)
        return self._roles[name]

    async def close(self) -> None:
        for leadership in self._roles.values():
            await leadership.close()


def _leader_gauge(role: str, leader: bool) -> None:
    metrics().leader.labels(role=role).set(1 if leader else 0)


def _service_job(service: AIService) -> Callable[[], Coroutine[Any, Any, None]]:
    async def job() -> None:
        await service.start()
        try:
            await asyncio.Event().wait()
        finally:
            await service.stop()

    return job


def anchor_policy(settings: Settings) -> AnchorPolicy:
    return AnchorPolicy(
        max_size=settings.batch_max_size,
        max_age=settings.batch_max_age,
        confirmations=settings.confirmations,
        tx_timeout=settings.tx_timeout,
        reorg_depth=settings.reorg_depth,
        reorg_check_interval=settings.reorg_check_interval,
        max_backoff=settings.anchor_max_backoff,
    )


async def _start(stack: AsyncExitStack, job: Coroutine[Any, Any, None], name: str) -> None:
    """Run ``job`` as a background task until the stack closes; log it if it dies."""
    task = asyncio.create_task(job, name=name)

    def done(t: asyncio.Task[None]) -> None:
        if not t.cancelled() and t.exception() is not None:
            log.error("%s stopped: %s", name, t.exception(), exc_info=t.exception())

    task.add_done_callback(done)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)


async def _webhook(stack: AsyncExitStack, settings: Settings) -> Any:
    """The webhook publisher, if a URL is set (closed with the platform)."""
    if not settings.ai_webhook_url:
        return None
    from chainsense.ai.webhook import WebhookSender

    sender = WebhookSender(settings.ai_webhook_url)
    await sender.start()
    stack.push_async_callback(sender.stop)
    return sender.publish
