"""Every Prometheus metric of ChainSense, defined in one place.

Naming follows Prometheus practice: a ``chainsense_`` prefix, base units (seconds, wei), counters
ending in ``_total``, and no device addresses (or any other unbounded value) as labels. Nothing is
built at import time: :func:`metrics` builds the set once per process, on first use.

With several worker processes, set ``PROMETHEUS_MULTIPROC_DIR`` (``chainsense serve --workers``
does) so that every process writes its samples there and ``/metrics`` aggregates them; gauges
then say how they combine across processes (``multiprocess_mode``).

Other code records through the attributes of :func:`metrics` or the helpers below; for example the
rate limiter calls :func:`record_rate_limited`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = [
    "CONTENT_TYPE_LATEST",
    "Metrics",
    "exposition",
    "forget_dead_processes",
    "metrics",
    "record_rate_limited",
    "record_rpc_circuit",
    "record_rpc_short_circuit",
    "record_shed",
    "record_unavailable",
]

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    # HTTP
    http_requests: Counter
    http_request_duration: Histogram
    rate_limited: Counter
    shed: Counter
    unavailable: Counter
    # ingest
    readings_ingested: Counter
    ack_latency: Histogram
    verification_duration: Histogram
    commit_duration: Histogram
    commit_batch_readings: Histogram
    commit_batch_requests: Histogram
    # provenance
    unsealed_readings: Gauge
    oldest_unsealed_age: Gauge
    batches_sealed: Counter
    anchor_transactions: Counter
    pending_anchors: Gauge
    oldest_pending_anchor_age: Gauge
    anchor_confirmation: Histogram
    anchor_gas_used: Counter
    # chain
    chain_head_block: Gauge
    chain_rpc_up: Gauge
    chain_rpc_circuit: Gauge
    chain_rpc_short_circuited: Counter
    anchorer_balance: Gauge
    anchorer_blocked: Gauge
    dev_chain_state_dump_ok: Gauge
    dev_chain_state_age: Gauge
    # storage
    store_writes_failing: Gauge
    # AI
    ai_lag_readings: Gauge
    anomalies_raised: Counter
    # runtime
    event_loop_lag: Histogram
    leader: Gauge
    build_info: Gauge


def _build() -> Metrics:
    multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    registry = CollectorRegistry(auto_describe=True)

    def gauge(name: str, doc: str, labels: tuple[str, ...] = (), mode: str = "max") -> Gauge:
        kwargs = {"multiprocess_mode": "live" + mode} if multiprocess else {}
        return Gauge(name, doc, labels, registry=registry, **kwargs)  # type: ignore[arg-type]

    m = Metrics(
        registry=registry,
        http_requests=Counter(
            "chainsense_http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ("method", "route", "status"),
            registry=registry,
        ),
        http_request_duration=Histogram(
            "chainsense_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ("method", "route"),
            buckets=_FAST,
            registry=registry,
        ),
        rate_limited=Counter(
            "chainsense_rate_limited_requests_total",
            "Requests (or a request's readings) refused by a rate limit, by policy (key, "
            "device, address).",
            ("policy",),
            registry=registry,
        ),
        shed=Counter(
            "chainsense_shed_requests_total",
            "Requests answered 503 by overload shedding, by reason.",
            ("reason",),
            registry=registry,
        ),
        unavailable=Counter(
            "chainsense_unavailable_responses_total",
            "Requests answered 503 with Retry-After because a dependency was unavailable, by "
            "dependency (store: down, locked or full; chain: RPC down or circuit open).",
            ("dependency",),
            registry=registry,
        ),
        readings_ingested=Counter(
            "chainsense_readings_ingested_total",
            "Readings received, by transport (http, mqtt) and result (stored, duplicate, "
            "rejected).",
            ("transport", "result"),
            registry=registry,
        ),
        ack_latency=Histogram(
            "chainsense_ingest_ack_latency_seconds",
            "From a request's readings entering the pipeline to their durable acknowledgement.",
            ("transport",),
            buckets=_FAST,
            registry=registry,
        ),
        verification_duration=Histogram(
            "chainsense_signature_verification_duration_seconds",
            "Time to check one request's readings (parse, schema, EIP-712 recovery, registry).",
            buckets=_FAST,
            registry=registry,
        ),
        commit_duration=Histogram(
            "chainsense_commit_duration_seconds",
            "Time of one group commit of readings (one database transaction).",
            buckets=_FAST,
            registry=registry,
        ),
        commit_batch_readings=Histogram(
            "chainsense_commit_batch_readings",
            "Readings per group commit.",
            buckets=_SIZES,
            registry=registry,
        ),
        commit_batch_requests=Histogram(
            "chainsense_commit_batch_requests",
            "Requests per group commit.",
            buckets=_SIZES,
            registry=registry,
        ),
        unsealed_readings=gauge(
            "chainsense_unsealed_readings", "Stored readings not yet sealed into a batch."
        ),
        oldest_unsealed_age=gauge(
            "chainsense_oldest_unanchored_reading_age_seconds",
            "Age of the oldest stored reading not yet anchored (0 when none waits).",
        ),
        batches_sealed=Counter(
            "chainsense_batches_sealed_total", "Merkle batches sealed.", registry=registry
        ),
        anchor_transactions=Counter(
            "chainsense_anchor_transactions_total",
            "Anchoring attempts by result (anchored, already_anchored, failed).",
            ("result",),
            registry=registry,
        ),
        pending_anchors=gauge(
            "chainsense_pending_anchors", "Sealed batches whose root is not anchored yet."
        ),
        oldest_pending_anchor_age=gauge(
            "chainsense_oldest_pending_anchor_age_seconds",
            "Age of the oldest sealed batch not anchored yet (0 when none waits).",
        ),
        anchor_confirmation=Histogram(
            "chainsense_anchor_confirmation_seconds",
            "From a batch's sealing to its anchor being recorded with enough confirmations.",
            buckets=_SLOW,
            registry=registry,
        ),
        anchor_gas_used=Counter(
            "chainsense_anchor_gas_used_total",
            "Gas used by anchor transactions this process sent.",
            registry=registry,
        ),
        chain_head_block=gauge("chainsense_chain_head_block", "The chain's latest block number."),
        chain_rpc_up=gauge(
            "chainsense_chain_rpc_up", "1 when the chain RPC answered the last probe, else 0."
        ),
        chain_rpc_circuit=gauge(
            "chainsense_chain_rpc_circuit_state",
            "1 for the state the chain RPC's circuit breaker is in (closed, open, half_open), "
            "0 for the others.",
            ("state",),
        ),
        chain_rpc_short_circuited=Counter(
            "chainsense_chain_rpc_short_circuited_total",
            "Chain RPC calls failed at once, without a request, because the circuit was open.",
            registry=registry,
        ),
        anchorer_balance=gauge(
            "chainsense_anchorer_balance_wei", "Balance of the anchorer account, in wei."
        ),
        anchorer_blocked=gauge(
            "chainsense_anchorer_blocked",
            "1 while anchoring is stopped by a failure retrying cannot fix (the anchorer account "
            "cannot pay for gas), else 0; /v1/anchoring says why.",
        ),
        dev_chain_state_dump_ok=gauge(
            "chainsense_dev_chain_state_dump_ok",
            "1 while the dev chain's periodic state dumps succeed, 0 while they fail (a restart "
            "would roll the chain back); absent without a dev chain.",
            mode="min",
        ),
        dev_chain_state_age=gauge(
            "chainsense_dev_chain_state_age_seconds",
            "Seconds since the dev chain's state was last saved to disk.",
        ),
        store_writes_failing=gauge(
            "chainsense_store_writes_failing",
            "1 while this process's database writes fail (down, locked, disk full), else 0.",
        ),
        ai_lag_readings=gauge(
            "chainsense_ai_lag_readings", "Stored readings the AI worker has not scored yet."
        ),
        anomalies_raised=Counter(
            "chainsense_anomalies_raised_total", "Anomaly events raised.", registry=registry
        ),
        event_loop_lag=Histogram(
            "chainsense_event_loop_lag_seconds",
            "How late a callback scheduled at a request's arrival ran (about one pass of the "
            "event loop over every ready request); measured by overload shedding.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        ),
        leader=gauge(
            "chainsense_leader",
            "1 when this process holds the role's leadership (anchorer, ai, ...), else 0.",
            ("role",),
            # one series per live worker (a `pid` label) so that which one leads shows, and
            # sum by (role) counts the leaders: 1, or 0 during a takeover
            mode="all",
        ),
        build_info=gauge(
            "chainsense_build_info", "Always 1; the labels say which build runs.", ("version",)
        ),
    )
    from chainsense import __version__

    m.build_info.labels(version=__version__).set(1)
    return m


@functools.cache
def metrics() -> Metrics:
    """This process's metrics (built on first use)."""
    return _build()


def record_rate_limited(policy: str) -> None:
    """Count one request a rate limit refused (``policy``: key, device or address)."""
    metrics().rate_limited.labels(policy=policy).inc()


_CIRCUIT_STATES = ("closed", "open", "half_open")


def record_rpc_circuit(state: str) -> None:
    """The chain RPC's circuit breaker is now in ``state`` (closed, open or half_open)."""
    gauge = metrics().chain_rpc_circuit
    for name in _CIRCUIT_STATES:
        gauge.labels(state=name).set(1 if name == state else 0)


def record_rpc_short_circuit() -> None:
    """Count one chain RPC call refused at once by the open circuit."""
    metrics().chain_rpc_short_circuited.inc()


def record_unavailable(dependency: str) -> None:
    """Count one request answered 503 because ``dependency`` (store, chain) was unavailable."""
    metrics().unavailable.labels(dependency=dependency).inc()


def record_shed(reason: str) -> None:
    """Count one request overload shedding answered with 503."""
    metrics().shed.labels(reason=reason).inc()


def exposition() -> tuple[bytes, str]:
    """The Prometheus text exposition of every metric (all processes' in multiprocess mode),
    and its content type."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        from prometheus_client import multiprocess

        forget_dead_processes(path)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(metrics().registry), CONTENT_TYPE_LATEST


def forget_dead_processes(path: str) -> list[int]:
    """Drop the live gauges of worker processes that are gone (a worker killed and replaced by
    the process manager never says so); return their pids. Counters and histograms of dead
    workers stay: their totals still count. A pid reused by an unrelated process keeps its
    worker's gauges until that process ends too."""
    from prometheus_client import multiprocess

    dead: set[int] = set()
    for name in os.listdir(path):
        if not (name.startswith("gauge_live") and name.endswith(".db")):
            continue
        try:
            pid = int(name[: -len(".db")].rsplit("_", 1)[1])
        except ValueError:
            continue
        if pid not in dead and not _alive(pid):
            dead.add(pid)
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    return sorted(dead)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
