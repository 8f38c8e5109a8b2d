"""Settings, read from ``CHAINSENSE_*`` environment variables (and a ``.env`` file if present).

Read once, by the app factory or the CLI, and passed down; nothing reads the environment later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Every knob of ChainSense. The defaults run everything embedded on one machine."""

    model_config = SettingsConfigDict(env_prefix="CHAINSENSE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path(".chainsense"),
        description="Where the SQLite file, the dev chain state and deployment records live.",
    )

    # --- chain -----------------------------------------------------------------------------
    rpc_url: str | None = Field(
        default=None,
        description="JSON-RPC endpoint of an EVM chain. Unset: ChainSense starts its own Anvil.",
    )
    anvil_bin: Path | None = Field(
        default=None, description="Anvil binary; default: the one from node_modules, then PATH."
    )
    anvil_host: str = "127.0.0.1"
    anvil_port: int = 8545
    anvil_chain_id: int = 31337
    anvil_state_interval: int = Field(
        default=1,
        ge=1,
        description="Seconds between dev chain state dumps: the most a kill -9 of Anvil can lose.",
    )
    dev_chain_report: Path | None = Field(
        default=None,
        description="The dump report of a dev chain another process runs and saves (`serve "
        "--workers` sets it for its workers): /readyz reads it for dev_chain_state.",
    )
    deployer_key: SecretStr | None = Field(
        default=None, description="Key that deploys contracts and holds the admin roles."
    )
    operator_key: SecretStr | None = Field(
        default=None, description="Key that registers and revokes devices (OPERATOR_ROLE)."
    )
    anchorer_key: SecretStr | None = Field(
        default=None, description="Key that anchors batch roots (ANCHORER_ROLE)."
    )
    rpc_timeout: float = Field(default=10.0, gt=0, description="Seconds per RPC request.")
    rpc_retries: int = Field(default=4, ge=0, description="Retries of a failed RPC request.")
    rpc_breaker_failures: int = Field(
        default=3,
        ge=0,
        description="Failed RPC calls in a row that open the circuit breaker (0: no breaker).",
    )
    rpc_breaker_cooldown: float = Field(
        default=5.0, gt=0, description="Seconds the open circuit refuses calls before a probe."
    )
    tx_timeout: float = Field(default=120.0, gt=0, description="Seconds to wait for a receipt.")
    confirmations: int = Field(default=1, ge=1, description="Blocks a transaction must have.")

    # --- storage ---------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default: a SQLite file in the data dir. For PostgreSQL: "
        "postgresql+asyncpg://user:password@host/db",
    )
    min_free_disk_mb: int = Field(
        default=32,
        ge=0,
        description="Free space (MiB) a SQLite database's disk needs for /readyz to say ready.",
    )

    # --- ingest ----------------------------------------------------------------------------
    max_batch: int = Field(default=1000, ge=1, description="Readings per POST /v1/readings.")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest request body accepted, in bytes."
    )
    max_future_ms: int = Field(
        default=300_000,
        ge=0,
        description="How far ahead of the server clock a reading's timestamp may be (clock skew).",
    )
    registry_poll_interval: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between DeviceRegistry event polls: the bound on how long a "
        "revocation made directly on the chain takes to apply.",
    )

    # --- input hardening (docs/input.md) ------------------------------------------------------
    max_json_depth: int = Field(
        default=32,
        ge=2,
        le=200,
        description="Deepest nesting of arrays and objects accepted in a request body (checked "
        "before parsing; a reading batch needs 4).",
    )

    # --- provenance: Merkle batches and anchoring ----------------------------------------------
    anchoring: bool = Field(
        default=True,
        description="Run the batcher/anchorer in this process. Run exactly one per chain: turn "
        "it off in every other API process that shares the database.",
    )
    batch_max_size: int = Field(
        default=2000,
        ge=1,
        le=100_000,
        description="Seal a batch when this many readings wait (gas per reading falls with it).",
    )
    batch_max_age: float = Field(
        default=2.0,
        gt=0,
        description="...or when the oldest waiting reading is this many seconds old.",
    )
    reorg_depth: int = Field(
        default=64, ge=1, description="Blocks deep the anchorer re-checks its anchors for reorgs."
    )
    reorg_check_interval: float = Field(
        default=5.0, gt=0, description="Seconds between those re-checks."
    )
    anchor_max_backoff: float = Field(
        default=30.0, gt=0, description="Longest wait between anchoring retries (RPC down)."
    )
    crash_at: str | None = Field(
        default=None,
        description="Testing only (fault injection): SIGKILL the process at this named point of "
        "the anchorer: after-seal, after-send or after-receipt.",
    )

    # --- API -------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000

    # --- command line: where the CLI finds the platform (cli-docs) ----------------------------
    api_url: str | None = Field(
        default=None,
        description="The platform's base URL for the CLI's commands. Unset: derived from "
        "CHAINSENSE_HOST and CHAINSENSE_PORT, the address `chainsense serve` listens on.",
    )

    # --- AI --------------------------------------------------------------------------------
    ai_enabled: bool = Field(default=True, description="Run the AI worker beside ingestion.")
    ai_process: bool = Field(
        default=True,
        description="Run the AI worker's models in a process of their own, off the serving "
        "process's GIL (false: in a thread of the serving process).",
    )
    ai_threshold: float = Field(
        default=1.0,
        gt=0,
        description="Anomaly score at which an event opens; lower = more sensitive.",
    )
    ai_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description='Per schema name or device address, e.g. {"chainsense.meter.v1": 1.5, '
        '"0xAbc...": 0.8}; a device wins over its schema.',
    )
    ai_chunk: int = Field(default=2000, ge=1, le=10_000, description="Readings per AI step.")
    ai_poll_interval: float = Field(
        default=1.0, gt=0, description="Seconds the AI worker waits for new readings at most."
    )
    ai_limits: dict[str, float] = Field(
        default_factory=lambda: {"vibration_rms": 7.1, "temperature": 90.0, "current": 30.0},
        description="Limits of chainsense.machine.v1 metrics for remaining useful life.",
    )
    ai_webhook_url: str | None = Field(
        default=None, description="POST every anomaly event here as JSON (with retries)."
    )

    # --- AI: sensitivity as a false-alarm rate, hard limits, counters, alarms ---------------
    ai_false_alarms_per_week: float = Field(
        default=1.0,
        gt=0,
        description="Sensitivity: about this many false alarms per device stream per week. The "
        "alarm point is the tail probability rate * sampling interval / week.",
    )
    ai_false_alarms: dict[str, float] = Field(
        default_factory=dict,
        description='Per schema name or device address, e.g. {"chainsense.meter.v1": 0.1}; a '
        "device wins over its schema.",
    )
    ai_hard_limits: dict[str, str] = Field(
        default_factory=lambda: {"chainsense.coldchain.v1:temperature": "2..8"},
        description='Hard ranges by "schema:metric", "low..high" (an end may be empty): a value '
        "outside raises a critical alarm at once.",
    )
    ai_counters: list[str] = Field(
        default_factory=lambda: ["chainsense.charger.v1:energy_delivered"],
        description='Cumulative counters by "schema:metric": judged as a rate per second.',
    )
    ai_baseline_schemas: list[str] = Field(
        default_factory=lambda: ["chainsense.machine.v1"],
        description="Schemas whose devices are judged against their first 400 readings (a "
        "commissioning baseline of normal operation, all metrics together): machines.",
    )

    # --- settlement --------------------------------------------------------------------------
    payment_token: str | None = Field(
        default=None,
        description="ERC-20 the settlement contracts are paid in. Unset: deploy a 6-decimal "
        "TestStablecoin (tUSD) and fund the dev accounts (development chains only).",
    )
    escrow_challenge_period: int = Field(
        default=3_600, ge=1, description="Seconds after delivery during which anyone can prove "
        "a cold-chain breach.",
    )  # fmt: skip
    escrow_report_timeout: int = Field(
        default=3_600, ge=1, description="Seconds after a shipment window within which the oracle "
        "must report delivery.",
    )  # fmt: skip
    market_interval: int = Field(default=900, ge=1, description="Energy market interval, seconds.")
    market_settlement_period: int = Field(
        default=3_600, ge=1, description="Seconds after an interval to prove delivery."
    )
    market_agent: bool = Field(
        default=True,
        description="Place opted-in participants' market orders from their meter forecasts "
        "(see /v1/market/agents).",
    )
    market_agent_poll_interval: float = Field(
        default=30.0, gt=0, description="Seconds between the market agent's rounds."
    )
    charging_session_timeout: int = Field(
        default=4 * 3_600, ge=1, description="Seconds a station has to close a charging session."
    )

    # --- console ---------------------------------------------------------------------------
    session_lifetime: float = Field(
        default=12 * 3_600,
        gt=0,
        description="Seconds a console sign-in lasts (revoking its API key ends it at once).",
    )

    # --- MQTT ingest (see docs/mqtt.md) ------------------------------------------------------
    mqtt_url: SecretStr | None = Field(
        default=None,
        description="mqtt://user:password@host:port of an MQTT 5 broker: when set, `serve` "
        "bridges device readings from it into the ingest pipeline (the password is never "
        "printed). mqtts:// for TLS.",
    )
    mqtt_client_id: str | None = Field(
        default=None,
        description="The bridge's MQTT client id: its broker session, which must survive a "
        "restart (default: chainsense-<host name>-<API port>). Every process needs its own.",
    )
    mqtt_receive_maximum: int = Field(
        default=1000,
        ge=1,
        le=65535,
        description="Messages the broker may have in flight to the bridge, unacknowledged: "
        "the bridge acknowledges after the commit, so a slow commit holds the rest at the broker.",
    )
    mqtt_session_expiry: int = Field(
        default=86_400,
        ge=0,
        description="Seconds the broker keeps the bridge's session (and its queued messages) "
        "while the platform is down.",
    )
    mqtt_leave_on_stop: bool = Field(
        default=False,
        description="On a clean stop, leave the shared subscription and end the bridge's "
        "session, so the other processes take its share while it is down (default: keep it, "
        "and the broker queues this process's share until it is back).",
    )
    mqtt_demo_url: SecretStr | None = Field(
        default=None,
        description="Broker URL the demo fleet publishes with (default: CHAINSENSE_MQTT_URL).",
    )

    # --- demo ------------------------------------------------------------------------------
    demo_fleet: bool = Field(
        default=False,
        description="Stream the demo fleet (trucks, homes, charger, machine) into this platform: "
        "one signed reading per device per second. `make run` turns it on.",
    )

    # --- hardening: rate limits, load shedding, CORS (docs/security.md) ------------------------
    rate_limit_enabled: bool = Field(
        default=True, description="Answer 429 when a key, a device or an address is over its rate."
    )
    rate_limit_key_rate: float = Field(
        default=100.0, gt=0, description="Requests per second an API key may make, sustained."
    )
    rate_limit_key_burst: int = Field(
        default=200, ge=1, description="Requests an API key may make at once (the bucket size)."
    )
    rate_limit_device_rate: float = Field(
        default=20.0,
        gt=0,
        description="Requests per second carrying a device's readings, counted once per device "
        "per request and only after its signature is verified.",
    )
    rate_limit_device_burst: int = Field(default=100, ge=1, description="...and at once.")
    rate_limit_address_rate: float = Field(
        default=100.0,
        gt=0,
        description="Requests per second from one client address without a valid API key "
        "(devices posting readings included: raise it when many devices share one address).",
    )
    rate_limit_address_burst: int = Field(default=200, ge=1, description="...and at once.")
    redis_url: str | None = Field(
        default=None,
        description="Redis for rate-limit counters shared by every process (redis://host:6379/0)."
        " Unset: counters live in this process.",
    )
    shed_max_in_flight: int = Field(
        default=256,
        ge=1,
        description="Requests handled at once; more wait (see shed_queue_timeout) or get 503.",
    )
    shed_max_queue: int = Field(
        default=1024, ge=0, description="Requests waiting for a slot; more get 503 at once."
    )
    shed_queue_timeout: float = Field(
        default=2.0, ge=0, description="Seconds a request waits for a slot before 503."
    )
    shed_retry_after: int = Field(
        default=1, ge=1, description="Retry-After (seconds) of a 503 from load shedding."
    )
    shed_max_wait: float = Field(
        default=1.0,
        ge=0,
        description="Seconds a new request may be expected to have waited before the app (the "
        "event loop's pass time x the connections waiting to be accepted) before requests get "
        "503 at the door, with a Retry-After of twice that estimate; 0: off.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed to call the API from a browser (["https://ops.example"]); '
        "empty: CORS off (no Access-Control-* headers).",
    )

    def __repr_args__(self) -> Any:
        # A URL may carry credentials: the repr of the settings (in a traceback, a debugger)
        # shows them redacted.
        from chainsense.redact import redact_url

        for name, value in super().__repr_args__():
            if name is not None and name.endswith("_url") and isinstance(value, str):
                yield name, redact_url(value, keep_user=name == "database_url")
            else:
                yield name, value

    # --- runtime: ingest group commit, logs, traces ---------------------------------------------
    commit_window_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="Hold a group commit of readings this long to gather more requests (0: only "
        "what arrived while the previous commit ran, which adds no delay when idle).",
    )
    commit_max_readings: int = Field(
        default=10_000, ge=1, description="At most this many readings in one group commit."
    )
    log_format: str = Field(
        default="console",
        pattern="^(console|json)$",
        description="Log lines as readable key=value text (console) or one JSON object (json).",
    )
    log_level: str = Field(
        default="INFO",
        pattern="^(?i:debug|info|warning|error)$",
        description="Lowest level logged; DEBUG adds per-request RPC chatter.",
    )
    access_log: bool = Field(
        default=True,
        description="One log line per HTTP request (uvicorn's access log). Every request is "
        "counted in /metrics either way; off saves its formatting on the event loop.",
    )
    fast_ingest: bool = Field(
        default=True,
        description="Serve POST /v1/readings by a lean path dispatched before FastAPI's router "
        "and middleware (same answers, headers, limits and metrics; api/fastingest.py). Off, or "
        "with tracing or CORS on, the FastAPI route serves it.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP endpoint (e.g. http://127.0.0.1:4318) to export traces to; unset: "
        "tracing is off.",
    )

    @property
    def uses_dev_chain(self) -> bool:
        """True when ChainSense runs its own local Anvil chain."""
        return self.rpc_url is None

    @property
    def store_url(self) -> str:
        """The database URL in use (the SQLite file in the data dir unless one is set)."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'chainsense.db').resolve()}"

    @property
    def client_api_url(self) -> str:
        """The URL the CLI talks to: CHAINSENSE_API_URL, else the server's own host and port
        (a wildcard bind address is reached on the loopback)."""
        if self.api_url:
            return self.api_url.rstrip("/")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def dev_rpc_url(self) -> str:
        """The chain's JSON-RPC URL: CHAINSENSE_RPC_URL, else the dev chain's."""
        return self.rpc_url or f"http://{self.anvil_host}:{self.anvil_port}"

    @property
    def chain_dir(self) -> Path:
        return self.data_dir / "chain"

    @property
    def deployments_dir(self) -> Path:
        return self.data_dir / "deployments"
