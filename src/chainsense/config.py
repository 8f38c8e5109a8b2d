"""Settings, read from ``CHAINSENSE_*`` environment variables (and a ``.env`` file if present).

Read once, by the app factory or the CLI, and passed down; nothing reads the environment later.
"""

from __future__ import annotations

from pathlib import Path

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
    tx_timeout: float = Field(default=120.0, gt=0, description="Seconds to wait for a receipt.")
    confirmations: int = Field(default=1, ge=1, description="Blocks a transaction must have.")

    # --- storage ---------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default: a SQLite file in the data dir. For PostgreSQL: "
        "postgresql+asyncpg://user:password@host/db",
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

    # --- AI --------------------------------------------------------------------------------
    ai_enabled: bool = Field(default=True, description="Run the AI worker beside ingestion.")
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
    def chain_dir(self) -> Path:
        return self.data_dir / "chain"

    @property
    def deployments_dir(self) -> Path:
        return self.data_dir / "deployments"
