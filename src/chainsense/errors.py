"""The exception root of ChainSense.

Every error the platform raises on purpose derives from :class:`ChainSenseError`; only
``chainsense.api.errors`` maps them to HTTP, and only ``chainsense.cli._common`` maps them to exit
codes.

::

    ChainSenseError
    ├── ConfigError                 settings that cannot work (missing key, bad URL, ...)
    ├── ArtifactError               a contract artifact is missing or malformed
    └── ChainError                  anything about the chain
        ├── ChainUnavailableError   the RPC endpoint does not answer (after retries)
        ├── ChainTimeoutError       a transaction was not mined in time
        ├── DevChainError           the local Anvil node could not be started
        ├── DeploymentError         contracts are not deployed where the record says
        ├── TransactionRejectedError  the node refused a transaction (nonce, fee, ...)
        └── TransactionRevertedError  a call or transaction reverted; carries the decoded error
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtifactError",
    "ChainError",
    "ChainSenseError",
    "ChainTimeoutError",
    "ChainUnavailableError",
    "ConfigError",
    "DeploymentError",
    "DevChainError",
    "TransactionRejectedError",
    "TransactionRevertedError",
]


class ChainSenseError(Exception):
    """Root of every error ChainSense raises on purpose."""


class ConfigError(ChainSenseError):
    """The settings cannot work as given."""


class ArtifactError(ChainSenseError):
    """A contract artifact is missing or malformed."""


class ChainError(ChainSenseError):
    """Something went wrong talking to the chain."""


class ChainUnavailableError(ChainError):
    """The RPC endpoint did not answer, after retries."""

    def __init__(self, url: str, reason: str) -> None:
        from chainsense.redact import redact_url, scrub, url_secrets

        # The URL may carry credentials (user:password@, ?apikey=, /v3/<key>): never keep them.
        url, reason = redact_url(url), scrub(reason, url_secrets(url))
        super().__init__(f"chain RPC at {url} is unreachable: {reason}")
        self.url = url
        self.reason = reason


class ChainTimeoutError(ChainError):
    """A transaction was not mined within the allowed time."""

    def __init__(self, tx_hash: str, seconds: float) -> None:
        super().__init__(f"transaction {tx_hash} was not mined within {seconds:g} s")
        self.tx_hash = tx_hash
        self.seconds = seconds


class DevChainError(ChainError):
    """The local development chain could not be started or reached."""


class DeploymentError(ChainError):
    """Contracts are not deployed as the deployment record says."""


class TransactionRejectedError(ChainError):
    """The node refused to take a transaction (e.g. ``nonce too low`` when another process
    signs with the same key): nothing was sent; the signer re-reads its nonce, so a retry can
    succeed."""


class TransactionRevertedError(ChainError):
    """A call or transaction reverted.

    ``error_name`` and ``error_args`` hold the decoded custom error (for example
    ``ReadingAnchorRootAlreadyAnchored`` and ``{"root": "0x..."}``) when the revert data matches
    an error of a known ABI; ``data`` keeps the raw revert data.
    """

    def __init__(
        self,
        *,
        error_name: str | None,
        error_args: dict[str, Any] | None = None,
        data: str | None = None,
        tx_hash: str | None = None,
        function: str | None = None,
    ) -> None:
        self.error_name = error_name
        self.error_args = error_args or {}
        self.data = data
        self.tx_hash = tx_hash
        self.function = function
        where = f" in {function}" if function else ""
        tx = f" (tx {tx_hash})" if tx_hash else ""
        if error_name:
            args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.error_args.items())
            what = f"{error_name}({args})"
        else:
            what = f"without a known error (data {data or '0x'})"
        super().__init__(f"reverted{where}: {what}{tx}")


def _fmt(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
