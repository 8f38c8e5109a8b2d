"""ColdChainEscrow: opening, the oracle's report, on-chain proofs of breach (and every way a
proof can be wrong), settlement by the penalty rule, pull payments, pause, and reentrancy through
a hostile token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from tests.contracts.helpers import (
    ZERO_ADDRESS,
    Reading,
    Roles,
    assert_reverts,
    emitted,
    make_account,
    send,
)
from tests.contracts.settlement_helpers import (
    COLDCHAIN,
    METER,
    Evidence,
    anchor_readings,
    deploy_any,
    now,
    warp,
)

pytestmark = [pytest.mark.chain, pytest.mark.usefixtures("isolated")]

CHALLENGE = 3_600
REPORT_TIMEOUT = 1_800
WINDOW = 7_200
PAYMENT = 1_000_000_000  # 1,000 tUSD
PER_BREACH = 100_000_000
CAP = 300_000_000
MIN_T, MAX_T = 200, 800  # 2.00 .. 8.00 Cel
SHIPPER = Account.from_key(ANVIL_DEV_KEYS[5])
CARRIER = Account.from_key(ANVIL_DEV_KEYS[6])
LOGGER_A = make_account("escrow-logger-a")
LOGGER_B = make_account("escrow-logger-b")
OUTSIDER = make_account("escrow-other-device")
ROTATED = make_account("escrow-logger-a-key-2")
STATUS_OPEN, STATUS_DELIVERED, STATUS_SETTLED = 1, 2, 3


@dataclass
class World:
    w3: Web3
    roles: Roles
    chain_id: int
    registry: Contract
    anchor: Contract
    token: Contract
    escrow: Contract
    start: int
    """Block time (s) at which the shipment window starts."""

    def terms(self, **changes: Any) -> tuple[Any, ...]:
        terms: dict[str, Any] = {
            "carrier": CARRIER.address,
            "loggers": [LOGGER_A.address, LOGGER_B.address],
            "schema": COLDCHAIN,
            "valueIndex": 0,
            "minValue": MIN_T,
            "maxValue": MAX_T,
            "windowStart": self.start * 1000,
            "windowEnd": (self.start + WINDOW) * 1000,
            "payment": PAYMENT,
            "penaltyPerBreach": PER_BREACH,
            "maxPenalty": CAP,
        }
        terms.update(changes)
        return tuple(terms.values())

    def open(self, **changes: Any) -> int:
        receipt = send(
            self.escrow.functions.openShipment(self.terms(**changes)), sender=SHIPPER.address
        )
        (_, args), *_ = emitted(self.escrow, receipt)
        return int(args["id"])

    def reading(
        self, key: LocalAccount, seq: int, temp: int, *, at_s: int | None = None
    ) -> Reading:
        at = self.start + 60 * seq if at_s is None else at_s
        return Reading(key.address, seq, at * 1000, COLDCHAIN, (temp, 620))

    def evidence(
        self, *signed: tuple[LocalAccount, Reading], anchored: bool = True
    ) -> list[Evidence]:
        return anchor_readings(
            self.w3,
            registry=self.registry,
            anchor=self.anchor if anchored else None,
            anchorer=self.roles.anchorer.address,
            signed=list(signed),
            chain_id=self.chain_id,
        )

    def report(self, shipment: int, breaches: int = 0, root: bytes = b"\x01" * 32) -> None:
        warp(self.w3, max(now(self.w3), self.start + WINDOW) + 1)
        call = self.escrow.functions.reportDelivery(shipment, breaches == 0, breaches, root)
        send(call, sender=self.roles.operator.address)

    def shipment(self, shipment: int) -> dict[str, Any]:
        fields = [
            "shipper", "carrier", "status", "valueIndex", "reportedBreaches", "provenBreaches",
            "minValue", "maxValue", "windowStart", "windowEnd", "claimDeadline", "schema",
            "evidenceRoot", "payment", "penaltyPerBreach", "maxPenalty",
        ]  # fmt: skip
        return dict(zip(fields, self.escrow.functions.shipmentOf(shipment).call(), strict=True))


def _world(
    w3: Web3, roles: Roles, chain_id: int, registry: Contract, anchor: Contract, token_name: str
) -> World:
    admin = roles.admin.address
    if token_name == "TestStablecoin":
        token, _ = deploy_any(w3, token_name, admin, sender=admin)
    else:
        token, _ = deploy_any(w3, token_name, sender=admin)
    escrow, _ = deploy_any(
        w3,
        "ColdChainEscrow",
        admin,
        roles.operator.address,
        token.address,
        registry.address,
        anchor.address,
        CHALLENGE,
        REPORT_TIMEOUT,
        sender=admin,
    )
    for device in (LOGGER_A, LOGGER_B, OUTSIDER):
        send(
            registry.functions.register(device.address, roles.owner.address, keccak(text="logger")),
            sender=roles.operator.address,
        )
    send(token.functions.mint(SHIPPER.address, 10 * PAYMENT), sender=admin)
    send(token.functions.approve(escrow.address, 2**256 - 1), sender=SHIPPER.address)
    return World(w3, roles, chain_id, registry, anchor, token, escrow, start=now(w3) + 10)


@pytest.fixture
def world(w3: Web3, roles: Roles, chain_id: int, registry: Contract, anchor: Contract) -> World:
    return _world(w3, roles, chain_id, registry, anchor, "TestStablecoin")


# --- openShipment ---------------------------------------------------------------------------------


def test_openShipment_recordsTermsAndPullsPayment(world: World) -> None:
    receipt = send(world.escrow.functions.openShipment(world.terms()), sender=SHIPPER.address)
    assert emitted(world.escrow, receipt) == [
        (
            "ShipmentOpened",
            {"id": 1, "shipper": SHIPPER.address, "carrier": CARRIER.address, "payment": PAYMENT},
        )
    ]
    s = world.shipment(1)
    assert s["status"] == STATUS_OPEN
    assert (s["minValue"], s["maxValue"], s["payment"]) == (MIN_T, MAX_T, PAYMENT)
    assert s["claimDeadline"] == world.start + WINDOW + REPORT_TIMEOUT + CHALLENGE
    assert world.escrow.functions.loggersOf(1).call() == [LOGGER_A.address, LOGGER_B.address]
    assert world.token.functions.balanceOf(world.escrow.address).call() == PAYMENT
    assert world.token.functions.balanceOf(SHIPPER.address).call() == 9 * PAYMENT


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"payment": 0, "maxPenalty": 0}, "zero payment"),
        ({"maxPenalty": PAYMENT + 1}, "penalty cap above payment"),
        ({"minValue": 900}, "empty range"),
        ({"windowEnd": 0}, "empty window"),
        ({"loggers": []}, "1 to 8 loggers"),
        ({"loggers": [make_account(f"l{i}").address for i in range(9)]}, "1 to 8 loggers"),
        ({"loggers": [LOGGER_A.address, LOGGER_A.address]}, "duplicate logger"),
    ],
)
def test_openShipment_revertsOnInvalidTerms(
    world: World, changes: dict[str, Any], reason: str
) -> None:
    call = world.escrow.functions.openShipment(world.terms(**changes))
    assert_reverts(call, "ColdChainEscrowInvalidTerms", reason, sender=SHIPPER.address, mined=False)


def test_openShipment_revertsOnZeroCarrier(world: World) -> None:
    call = world.escrow.functions.openShipment(world.terms(carrier=ZERO_ADDRESS))
    assert_reverts(call, "ColdChainEscrowZeroAddress", sender=SHIPPER.address)


def test_openShipment_revertsWhenPaused(world: World) -> None:
    send(world.escrow.functions.pause(), sender=world.roles.admin.address)
    call = world.escrow.functions.openShipment(world.terms())
    assert_reverts(call, "EnforcedPause", sender=SHIPPER.address)


def test_pause_revertsForNonAdmin(world: World) -> None:
    stranger = world.roles.stranger.address
    assert_reverts(
        world.escrow.functions.pause(),
        "AccessControlUnauthorizedAccount",
        stranger,
        b"\x00" * 32,
        sender=stranger,
    )


# --- reportDelivery -------------------------------------------------------------------------------


def test_reportDelivery_opensChallengeWindow(world: World) -> None:
    shipment = world.open()
    warp(world.w3, world.start + WINDOW + 5)
    call = world.escrow.functions.reportDelivery(shipment, True, 0, b"\x07" * 32)
    receipt = send(call, sender=world.roles.operator.address)
    block_time = world.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert emitted(world.escrow, receipt) == [
        (
            "DeliveryReported",
            {
                "id": shipment,
                "compliant": True,
                "breaches": 0,
                "evidenceRoot": b"\x07" * 32,
                "claimDeadline": block_time + CHALLENGE,
            },
        )
    ]
    s = world.shipment(shipment)
    assert (s["status"], s["claimDeadline"]) == (STATUS_DELIVERED, block_time + CHALLENGE)


def test_reportDelivery_revertsForNonOracle(world: World) -> None:
    shipment = world.open()
    warp(world.w3, world.start + WINDOW + 5)
    stranger = world.roles.stranger.address
    call = world.escrow.functions.reportDelivery(shipment, True, 0, b"\x07" * 32)
    assert_reverts(
        call,
        "AccessControlUnauthorizedAccount",
        stranger,
        keccak(text="ORACLE_ROLE"),
        sender=stranger,
    )


def test_reportDelivery_revertsOutOfTime(world: World) -> None:
    shipment = world.open()
    call = world.escrow.functions.reportDelivery(shipment, True, 0, b"\x07" * 32)
    operator = world.roles.operator.address
    assert_reverts(call, "ColdChainEscrowReportOutOfTime", shipment, sender=operator)  # window open
    warp(world.w3, world.start + WINDOW + REPORT_TIMEOUT)
    assert_reverts(call, "ColdChainEscrowReportOutOfTime", shipment, sender=operator)  # too late


def test_reportDelivery_revertsWhenAlreadyReported(world: World) -> None:
    shipment = world.open()
    world.report(shipment)
    call = world.escrow.functions.reportDelivery(shipment, True, 0, b"\x07" * 32)
    assert_reverts(
        call,
        "ColdChainEscrowWrongStatus",
        shipment,
        STATUS_DELIVERED,
        sender=world.roles.operator.address,
    )


def test_reportDelivery_revertsOnInconsistentResult(world: World) -> None:
    shipment = world.open()
    warp(world.w3, world.start + WINDOW + 5)
    call = world.escrow.functions.reportDelivery(shipment, True, 2, b"\x07" * 32)
    assert_reverts(
        call,
        "ColdChainEscrowInvalidTerms",
        "compliant iff no breach",
        sender=world.roles.operator.address,
    )


def test_reportDelivery_revertsForUnknownShipment(world: World) -> None:
    call = world.escrow.functions.reportDelivery(42, True, 0, b"\x07" * 32)
    assert_reverts(call, "ColdChainEscrowUnknownShipment", 42, sender=world.roles.operator.address)


# --- claimBreach ----------------------------------------------------------------------------------


def test_claimBreach_provesBreachDespiteCompliantReport(world: World) -> None:
    """The whole story: the oracle says "compliant", a stranger proves a breach anyway, the
    penalty applies at settlement and both parties withdraw their shares."""
    shipment = world.open()
    ok, hot = world.evidence(
        (LOGGER_A, world.reading(LOGGER_A, 1, 450)), (LOGGER_B, world.reading(LOGGER_B, 2, 1210))
    )
    world.report(shipment, breaches=0)
    stranger = world.roles.stranger.address
    receipt = send(world.escrow.functions.claimBreach(shipment, *hot.args()), sender=stranger)
    assert emitted(world.escrow, receipt) == [
        (
            "BreachProven",
            {
                "id": shipment,
                "logger": LOGGER_B.address,
                "structHash": hot.struct_hash,
                "value": 1210,
                "root": hot.root,
                "claimant": stranger,
            },
        )
    ]
    assert world.escrow.functions.isClaimed(shipment, hot.struct_hash).call()
    assert world.escrow.functions.penaltyOf(shipment).call() == [1, PER_BREACH]
    assert_reverts(  # the in-range reading of the same batch is no breach
        world.escrow.functions.claimBreach(shipment, *ok.args()),
        "ColdChainEscrowValueInRange",
        shipment,
        450,
        sender=stranger,
    )

    warp(world.w3, world.shipment(shipment)["claimDeadline"])
    receipt = send(world.escrow.functions.settle(shipment), sender=stranger)
    assert emitted(world.escrow, receipt) == [
        (
            "ShipmentSettled",
            {
                "id": shipment,
                "breaches": 1,
                "carrierAmount": PAYMENT - PER_BREACH,
                "shipperAmount": PER_BREACH,
            },
        )
    ]
    assert world.shipment(shipment)["status"] == STATUS_SETTLED
    before = world.token.functions.balanceOf(SHIPPER.address).call()
    send(world.escrow.functions.withdraw(), sender=CARRIER.address)
    send(world.escrow.functions.withdraw(), sender=SHIPPER.address)
    assert world.token.functions.balanceOf(CARRIER.address).call() == PAYMENT - PER_BREACH
    assert world.token.functions.balanceOf(SHIPPER.address).call() == before + PER_BREACH
    assert world.token.functions.balanceOf(world.escrow.address).call() == 0


def test_claimBreach_worksBeforeTheReportAndBelowRange(world: World) -> None:
    shipment = world.open()
    (cold,) = world.evidence((LOGGER_A, world.reading(LOGGER_A, 1, -150)))
    send(world.escrow.functions.claimBreach(shipment, *cold.args()), sender=CARRIER.address)
    assert world.shipment(shipment)["provenBreaches"] == 1


def test_claimBreach_revertsOnTamperedValue(world: World) -> None:
    shipment = world.open()
    (ev,) = world.evidence((LOGGER_A, world.reading(LOGGER_A, 1, 450)))
    forged = Evidence(
        ev.reading.replace(values=(1500, 620)), ev.signature, ev.root, ev.proof, ev.struct_hash
    )
    call = world.escrow.functions.claimBreach(shipment, *forged.args())
    assert_reverts(call, "ColdChainEscrowInvalidProof", sender=world.roles.stranger.address)


def test_claimBreach_revertsOnForgedSignature(world: World) -> None:
    """A reading that names logger A but is signed by another key, even once anchored (the
    anchorer anchors whatever batch it is given), is rejected by the registry check."""
    shipment = world.open()
    forger = make_account("escrow-forger")
    (forged,) = world.evidence((forger, world.reading(LOGGER_A, 1, 1500)))
    call = world.escrow.functions.claimBreach(shipment, *forged.args())
    assert_reverts(
        call,
        "ColdChainEscrowInvalidSignature",
        LOGGER_A.address,
        sender=world.roles.stranger.address,
    )


def test_claimBreach_revertsForAnotherDevice(world: World) -> None:
    shipment = world.open()
    (ev,) = world.evidence((OUTSIDER, world.reading(OUTSIDER, 1, 1500)))
    call = world.escrow.functions.claimBreach(shipment, *ev.args())
    assert_reverts(
        call,
        "ColdChainEscrowNotALogger",
        shipment,
        OUTSIDER.address,
        sender=world.roles.stranger.address,
    )


def test_claimBreach_revertsForUnregisteredKey(world: World) -> None:
    shipment = world.open()
    ghost = make_account("escrow-unregistered")
    (ev,) = world.evidence((ghost, world.reading(ghost, 1, 1500)))
    call = world.escrow.functions.claimBreach(shipment, *ev.args())
    assert_reverts(
        call,
        "ColdChainEscrowNotALogger",
        shipment,
        ghost.address,
        sender=world.roles.stranger.address,
    )


@pytest.mark.parametrize("offset_s", [-1, WINDOW + 1])
def test_claimBreach_revertsOutsideTheWindow(world: World, offset_s: int) -> None:
    shipment = world.open()
    reading = world.reading(LOGGER_A, 1, 1500, at_s=world.start + offset_s)
    (ev,) = world.evidence((LOGGER_A, reading))
    call = world.escrow.functions.claimBreach(shipment, *ev.args())
    assert_reverts(
        call,
        "ColdChainEscrowOutsideWindow",
        shipment,
        reading.timestamp,
        sender=world.roles.stranger.address,
    )


def test_claimBreach_revertsForNeverAnchoredRoot(world: World) -> None:
    shipment = world.open()
    (ev,) = world.evidence((LOGGER_A, world.reading(LOGGER_A, 1, 1500)), anchored=False)
    call = world.escrow.functions.claimBreach(shipment, *ev.args())
    assert_reverts(
        call, "ColdChainEscrowRootNotAnchored", ev.root, sender=world.roles.stranger.address
    )


def test_claimBreach_revertsOnDoubleClaim(world: World) -> None:
    shipment = world.open()
    (ev,) = world.evidence((LOGGER_A, world.reading(LOGGER_A, 1, 1500)))
    send(world.escrow.functions.claimBreach(shipment, *ev.args()), sender=SHIPPER.address)
    call = world.escrow.functions.claimBreach(shipment, *ev.args())
    assert_reverts(
        call,
        "ColdChainEscrowAlreadyClaimed",
        shipment,
        ev.struct_hash,
        sender=world.roles.stranger.address,
    )
    assert world.shipment(shipment)["provenBreaches"] == 1


def test_claimBreach_revertsOnWrongSchema(world: World) -> None:
    shipment = world.open()
    reading = Reading(LOGGER_A.address, 1, (world.start + 60) * 1000, METER, (1500, 0))
    (ev,) = world.evidence((LOGGER_A, reading))
    call = world.escrow.functions.claimBreach(shipment, *ev.args())
    assert_reverts(call, "ColdChainEscrowWrongSchema", shipment, METER, sender=SHIPPER.address)


def test_claimBreach_revertsAfterTheChallengeWindow(world: World) -> None:
    shipment = world.open()
    (ev,) = world.evidence((LOGGER_A, world.reading(LOGGER_A, 1, 1500)))
    world.report(shipment)
    warp(world.w3, world.shipment(shipment)["claimDeadline"])
    call = world.escrow.functions.claimBreach(shipment, *ev.args())
    assert_reverts(call, "ColdChainEscrowChallengeClosed", shipment, sender=SHIPPER.address)


def test_claimBreach_revertsAfterSettlement(world: World) -> None:
    shipment = world.open()
    (ev,) = world.evidence((LOGGER_A, world.reading(LOGGER_A, 1, 1500)))
    world.report(shipment)
    warp(world.w3, world.shipment(shipment)["claimDeadline"])
    send(world.escrow.functions.settle(shipment), sender=CARRIER.address)
    call = world.escrow.functions.claimBreach(shipment, *ev.args())
    assert_reverts(
        call, "ColdChainEscrowWrongStatus", shipment, STATUS_SETTLED, sender=SHIPPER.address
    )


def test_claimBreach_worksWhilePaused(world: World) -> None:
    """A pause cannot hide a breach."""
    shipment = world.open()
    (ev,) = world.evidence((LOGGER_A, world.reading(LOGGER_A, 1, 1500)))
    send(world.escrow.functions.pause(), sender=world.roles.admin.address)
    send(world.escrow.functions.claimBreach(shipment, *ev.args()), sender=SHIPPER.address)
    assert world.shipment(shipment)["provenBreaches"] == 1


def test_claimBreach_acceptsReadingSignedBeforeKeyRotation(world: World) -> None:
    """The key was valid when the root was anchored; rotating it later does not void the proof,
    and the logger identity (not the key) is what the shipment names."""
    shipment = world.open()
    (ev,) = world.evidence((LOGGER_A, world.reading(LOGGER_A, 1, 1500)))
    warp(world.w3, now(world.w3) + 1)  # keys are valid up to, not including, the rotation second
    send(
        world.registry.functions.rotateKey(LOGGER_A.address, ROTATED.address),
        sender=world.roles.operator.address,
    )
    (later,) = world.evidence((ROTATED, world.reading(ROTATED, 2, 1600)))
    send(world.escrow.functions.claimBreach(shipment, *ev.args()), sender=SHIPPER.address)
    receipt = send(
        world.escrow.functions.claimBreach(shipment, *later.args()), sender=SHIPPER.address
    )
    assert emitted(world.escrow, receipt)[0][1]["logger"] == LOGGER_A.address
    assert world.shipment(shipment)["provenBreaches"] == 2


def test_claimBreach_revertsForKeyRevokedBeforeAnchoring(world: World) -> None:
    shipment = world.open()
    send(world.registry.functions.revoke(LOGGER_A.address), sender=world.roles.operator.address)
    (ev,) = world.evidence((LOGGER_A, world.reading(LOGGER_A, 1, 1500)))
    call = world.escrow.functions.claimBreach(shipment, *ev.args())
    assert_reverts(
        call, "ColdChainEscrowInvalidSignature", LOGGER_A.address, sender=SHIPPER.address
    )


# --- settle ---------------------------------------------------------------------------------------


def test_settle_paysCarrierInFullWhenCompliant(world: World) -> None:
    shipment = world.open()
    world.report(shipment, breaches=0)
    warp(world.w3, world.shipment(shipment)["claimDeadline"])
    send(world.escrow.functions.settle(shipment), sender=CARRIER.address)
    assert world.escrow.functions.owed(CARRIER.address).call() == PAYMENT
    assert world.escrow.functions.owed(SHIPPER.address).call() == 0


def test_settle_capsThePenaltyAndCountsTheLargerOfReportedAndProven(world: World) -> None:
    shipment = world.open()
    evs = world.evidence(*((LOGGER_A, world.reading(LOGGER_A, i, 900 + i)) for i in range(1, 3)))
    world.report(shipment, breaches=5)
    for ev in evs:
        send(world.escrow.functions.claimBreach(shipment, *ev.args()), sender=SHIPPER.address)
    assert world.escrow.functions.penaltyOf(shipment).call() == [5, CAP]
    warp(world.w3, world.shipment(shipment)["claimDeadline"])
    send(world.escrow.functions.settle(shipment), sender=CARRIER.address)
    assert world.escrow.functions.owed(CARRIER.address).call() == PAYMENT - CAP
    assert world.escrow.functions.owed(SHIPPER.address).call() == CAP


def test_settle_withoutReportUsesProvenBreachesAfterTheDeadline(world: World) -> None:
    shipment = world.open()
    (ev,) = world.evidence((LOGGER_B, world.reading(LOGGER_B, 1, 100)))
    send(world.escrow.functions.claimBreach(shipment, *ev.args()), sender=SHIPPER.address)
    deadline = world.start + WINDOW + REPORT_TIMEOUT + CHALLENGE
    warp(world.w3, deadline - 2)
    call = world.escrow.functions.settle(shipment)
    assert_reverts(call, "ColdChainEscrowChallengeOpen", shipment, deadline, sender=CARRIER.address)
    warp(world.w3, deadline)
    send(call, sender=CARRIER.address)
    assert world.escrow.functions.owed(SHIPPER.address).call() == PER_BREACH


def test_settle_revertsDuringTheChallengeWindow(world: World) -> None:
    shipment = world.open()
    world.report(shipment)
    deadline = world.shipment(shipment)["claimDeadline"]
    call = world.escrow.functions.settle(shipment)
    assert_reverts(call, "ColdChainEscrowChallengeOpen", shipment, deadline, sender=CARRIER.address)


def test_settle_revertsTwice(world: World) -> None:
    shipment = world.open()
    world.report(shipment)
    warp(world.w3, world.shipment(shipment)["claimDeadline"])
    send(world.escrow.functions.settle(shipment), sender=CARRIER.address)
    call = world.escrow.functions.settle(shipment)
    assert_reverts(
        call, "ColdChainEscrowWrongStatus", shipment, STATUS_SETTLED, sender=CARRIER.address
    )


def test_settle_revertsWhenPaused(world: World) -> None:
    shipment = world.open()
    world.report(shipment)
    warp(world.w3, world.shipment(shipment)["claimDeadline"])
    send(world.escrow.functions.pause(), sender=world.roles.admin.address)
    assert_reverts(world.escrow.functions.settle(shipment), "EnforcedPause", sender=CARRIER.address)
    send(world.escrow.functions.unpause(), sender=world.roles.admin.address)
    send(world.escrow.functions.settle(shipment), sender=CARRIER.address)


# --- withdraw -------------------------------------------------------------------------------------


def test_withdraw_revertsWhenNothingIsOwed(world: World) -> None:
    call = world.escrow.functions.withdraw()
    assert_reverts(call, "ColdChainEscrowNothingToWithdraw", sender=CARRIER.address)


def test_withdraw_worksWhilePaused(world: World) -> None:
    shipment = world.open()
    world.report(shipment)
    warp(world.w3, world.shipment(shipment)["claimDeadline"])
    send(world.escrow.functions.settle(shipment), sender=CARRIER.address)
    send(world.escrow.functions.pause(), sender=world.roles.admin.address)
    receipt = send(world.escrow.functions.withdraw(), sender=CARRIER.address)
    assert emitted(world.escrow, receipt) == [
        ("Withdrawn", {"account": CARRIER.address, "amount": PAYMENT})
    ]
    assert world.escrow.functions.owed(CARRIER.address).call() == 0


# --- reentrancy through a hostile token -----------------------------------------------------------


@pytest.fixture
def evil(w3: Web3, roles: Roles, chain_id: int, registry: Contract, anchor: Contract) -> World:
    return _world(w3, roles, chain_id, registry, anchor, "ReentrantToken")


def test_withdraw_blocksReentrancyThroughTheToken(evil: World) -> None:
    shipment = evil.open()
    evil.report(shipment)
    warp(evil.w3, evil.shipment(shipment)["claimDeadline"])
    send(evil.escrow.functions.settle(shipment), sender=CARRIER.address)
    # The token re-enters withdraw() in the middle of paying the carrier.
    payload = evil.escrow.encode_abi("withdraw", args=[])
    send(evil.token.functions.arm(evil.escrow.address, payload), sender=CARRIER.address)
    call = evil.escrow.functions.withdraw()
    assert_reverts(call, "ReentrancyGuardReentrantCall", sender=CARRIER.address, mined=False)
    assert evil.escrow.functions.owed(CARRIER.address).call() == PAYMENT


def test_openShipment_blocksReentrancyThroughTheToken(evil: World) -> None:
    payload = evil.escrow.encode_abi("openShipment", args=[evil.terms()])
    send(evil.token.functions.arm(evil.escrow.address, payload), sender=SHIPPER.address)
    call = evil.escrow.functions.openShipment(evil.terms())
    assert_reverts(call, "ReentrancyGuardReentrantCall", sender=SHIPPER.address, mined=False)
    assert evil.escrow.functions.shipmentOf(1).call()[2] == 0
