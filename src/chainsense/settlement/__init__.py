"""Settlement: typed clients of the ColdChainEscrow, EnergyMarket and ChargingPayments contracts,
and the evidence (reading, signature, anchored root, Merkle path) they accept.

Domain code: no HTTP, no terminal. Build the clients from a deployment with :func:`open_settlement`.
"""

from __future__ import annotations

from dataclasses import dataclass

from chainsense.chain.client import ChainClient
from chainsense.chain.deploy import Deployment
from chainsense.settlement._base import TxResult
from chainsense.settlement.charging import ChargingPaymentsClient, ChargingSession, SessionStatus
from chainsense.settlement.errors import (
    DeadlineError,
    EvidenceRejectedError,
    InsufficientFundsError,
    NotAuthorizedError,
    SettlementError,
    SettlementStateError,
)
from chainsense.settlement.escrow import (
    ColdChainEscrowClient,
    Shipment,
    ShipmentStatus,
    ShipmentTerms,
)
from chainsense.settlement.evidence import Evidence, batch_evidence, reading_abi
from chainsense.settlement.market import EnergyMarketClient, IntervalState, Order

__all__ = [
    "ChargingPaymentsClient",
    "ChargingSession",
    "ColdChainEscrowClient",
    "DeadlineError",
    "EnergyMarketClient",
    "Evidence",
    "EvidenceRejectedError",
    "InsufficientFundsError",
    "IntervalState",
    "NotAuthorizedError",
    "Order",
    "SessionStatus",
    "Settlement",
    "SettlementError",
    "SettlementStateError",
    "Shipment",
    "ShipmentStatus",
    "ShipmentTerms",
    "TxResult",
    "batch_evidence",
    "open_settlement",
    "reading_abi",
]


@dataclass(frozen=True)
class Settlement:
    """The three settlement clients of one deployment."""

    escrow: ColdChainEscrowClient
    market: EnergyMarketClient
    charging: ChargingPaymentsClient


def open_settlement(client: ChainClient, deployment: Deployment) -> Settlement:
    """Clients of the deployment's settlement contracts, paid in its payment token."""
    token = deployment.payment_token
    return Settlement(
        escrow=ColdChainEscrowClient(client, deployment.address("ColdChainEscrow"), token),
        market=EnergyMarketClient(client, deployment.address("EnergyMarket"), token),
        charging=ChargingPaymentsClient(client, deployment.address("ChargingPayments"), token),
    )
