"""Settlement errors: a contract's custom error, decoded, becomes one of these.

::

    ChainSenseError
    └── SettlementError                a settlement action was refused
        ├── EvidenceRejectedError      the reading, signature or proof does not prove what it should
        ├── DeadlineError              too early or too late for this action
        ├── NotAuthorizedError         the caller may not do this
        ├── InsufficientFundsError     not enough balance, allowance or owed funds
        └── SettlementStateError       the shipment, order or session is not in the right state
"""

from __future__ import annotations

from typing import Any

from chainsense.errors import ChainSenseError, TransactionRevertedError

__all__ = [
    "DeadlineError",
    "EvidenceRejectedError",
    "InsufficientFundsError",
    "NotAuthorizedError",
    "SettlementError",
    "SettlementStateError",
    "from_revert",
]


class SettlementError(ChainSenseError):
    """A settlement contract refused an action. ``error_name`` and ``error_args`` are the decoded
    custom error (e.g. ``ColdChainEscrowAlreadyClaimed``); ``tx_hash`` is set when a mined
    transaction reverted."""

    def __init__(self, revert: TransactionRevertedError) -> None:
        super().__init__(str(revert))
        self.error_name: str = revert.error_name or "unknown"
        self.error_args: dict[str, Any] = revert.error_args
        self.tx_hash = revert.tx_hash


class EvidenceRejectedError(SettlementError):
    """The reading, its signature or its Merkle proof does not prove what the action needs."""


class DeadlineError(SettlementError):
    """Too early or too late for this action."""


class NotAuthorizedError(SettlementError):
    """The caller may not do this."""


class InsufficientFundsError(SettlementError):
    """Not enough token balance, allowance, deposit or owed funds."""


class SettlementStateError(SettlementError):
    """The shipment, order or session is not in a state that allows this action."""


_BY_SUFFIX: tuple[tuple[type[SettlementError], tuple[str, ...]], ...] = (
    (
        EvidenceRejectedError,
        (
            "RootNotAnchored", "InvalidProof", "InvalidSignature", "NotALogger", "WrongSchema",
            "OutsideWindow", "ValueInRange", "AlreadyClaimed", "WrongReading",
            "ReadingTooEarly", "NegativeEnergy",
        ),
    ),
    (
        DeadlineError,
        (
            "ChallengeClosed", "ChallengeOpen", "ReportOutOfTime", "SessionExpired",
            "NotExpired", "OrdersClosed", "NotStarted", "SettlementClosed", "SettlementOpen",
        ),
    ),
    (
        NotAuthorizedError,
        ("UnauthorizedAccount", "NotStation", "NotAuthorized", "NotMeterOwner"),
    ),
    (
        InsufficientFundsError,
        ("InsufficientBalance", "InsufficientAllowance", "NothingToWithdraw", "ZeroDeposit"),
    ),
)  # fmt: skip


def from_revert(revert: TransactionRevertedError) -> SettlementError:
    """The settlement error for a decoded revert."""
    name = revert.error_name or ""
    for cls, suffixes in _BY_SUFFIX:
        if name.endswith(suffixes):
            return cls(revert)
    return SettlementStateError(revert)
