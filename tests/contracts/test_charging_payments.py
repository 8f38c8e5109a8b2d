"""ChargingPayments: pricing by the charger's owner, sessions paid from the charger's signed,
anchored meter reading, refunds after the timeout, pause, and reentrancy through a hostile token."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from tests.contracts.helpers import Reading, Roles, assert_reverts, emitted, make_account, send
from tests.contracts.settlement_helpers import (
    CHARGER,
    COLDCHAIN,
    Evidence,
    anchor_readings,
    deploy_any,
    now,
    warp,
)

pytestmark = [pytest.mark.chain, pytest.mark.usefixtures("isolated")]

TIMEOUT = 4 * 3_600
PRICE = 300  # token units per Wh: 0.30 tUSD per kWh
DEPOSIT = 20_000_000  # 20 tUSD
STATION = Account.from_key(ANVIL_DEV_KEYS[7])
VEHICLE = Account.from_key(ANVIL_DEV_KEYS[8])
CHARGER_KEY = make_account("charging-charger")
OTHER_CHARGER = make_account("charging-other-charger")
OPEN, CLOSED, REFUNDED = 1, 2, 3


@dataclass
class World:
    w3: Web3
    roles: Roles
    chain_id: int
    registry: Contract
    anchor: Contract
    token: Contract
    pay: Contract

    def open(self, deposit: int = DEPOSIT) -> tuple[int, int]:
        receipt = send(
            self.pay.functions.openSession(CHARGER_KEY.address, deposit), sender=VEHICLE.address
        )
        return int(emitted(self.pay, receipt)[0][1]["id"]), now(self.w3)

    def meter(
        self, energy: int, *, at_s: int, key: object = None, anchored: bool = True
    ) -> Evidence:
        signer = CHARGER_KEY if key is None else key
        reading = Reading(CHARGER_KEY.address, 7, at_s * 1000, CHARGER, (energy,))
        (ev,) = anchor_readings(
            self.w3,
            registry=self.registry,
            anchor=self.anchor if anchored else None,
            anchorer=self.roles.anchorer.address,
            signed=[(signer, reading)],  # type: ignore[list-item]
            chain_id=self.chain_id,
        )
        return ev

    def session(self, sid: int) -> list[object]:
        return list(self.pay.functions.sessionOf(sid).call())


def _world(
    w3: Web3, roles: Roles, chain_id: int, registry: Contract, anchor: Contract, token_name: str
) -> World:
    admin = roles.admin.address
    args = (admin,) if token_name == "TestStablecoin" else ()
    token, _ = deploy_any(w3, token_name, *args, sender=admin)
    pay, _ = deploy_any(
        w3,
        "ChargingPayments",
        admin,
        token.address,
        registry.address,
        anchor.address,
        TIMEOUT,
        sender=admin,
    )
    for device in (CHARGER_KEY, OTHER_CHARGER):
        send(
            registry.functions.register(device.address, STATION.address, keccak(text="charger")),
            sender=roles.operator.address,
        )
    send(pay.functions.setPrice(CHARGER_KEY.address, PRICE), sender=STATION.address)
    send(token.functions.mint(VEHICLE.address, 10 * DEPOSIT), sender=admin)
    send(token.functions.approve(pay.address, 2**256 - 1), sender=VEHICLE.address)
    return World(w3, roles, chain_id, registry, anchor, token, pay)


@pytest.fixture
def world(w3: Web3, roles: Roles, chain_id: int, registry: Contract, anchor: Contract) -> World:
    return _world(w3, roles, chain_id, registry, anchor, "TestStablecoin")


def test_setPrice_recordsThePriceOfTheOwnersCharger(world: World) -> None:
    receipt = send(world.pay.functions.setPrice(CHARGER_KEY.address, 450), sender=STATION.address)
    assert emitted(world.pay, receipt) == [
        (
            "PriceSet",
            {"charger": CHARGER_KEY.address, "station": STATION.address, "pricePerWh": 450},
        )
    ]
    assert world.pay.functions.priceOf(CHARGER_KEY.address).call() == 450


def test_setPrice_revertsForNonOwner(world: World) -> None:
    call = world.pay.functions.setPrice(CHARGER_KEY.address, 1)
    assert_reverts(
        call,
        "ChargingPaymentsNotStation",
        CHARGER_KEY.address,
        VEHICLE.address,
        sender=VEHICLE.address,
    )


def test_openSession_pullsTheDepositAndFixesThePrice(world: World) -> None:
    sid, opened = world.open()
    assert world.session(sid) == [
        VEHICLE.address, CHARGER_KEY.address, STATION.address, OPEN, opened, 0, PRICE, DEPOSIT, 0,
    ]  # fmt: skip
    assert world.pay.functions.activeSessionOf(CHARGER_KEY.address).call() == sid
    assert world.token.functions.balanceOf(world.pay.address).call() == DEPOSIT


def test_openSession_revertsOnBusyChargerNoPriceOrZeroDeposit(world: World) -> None:
    sid, _ = world.open()
    fns = world.pay.functions
    v = VEHICLE.address
    assert_reverts(
        fns.openSession(CHARGER_KEY.address, 1),
        "ChargingPaymentsChargerBusy",
        CHARGER_KEY.address,
        sid,
        sender=v,
    )
    assert_reverts(
        fns.openSession(OTHER_CHARGER.address, 1),
        "ChargingPaymentsNoPrice",
        OTHER_CHARGER.address,
        sender=v,
    )
    send(fns.setPrice(OTHER_CHARGER.address, PRICE), sender=STATION.address)
    assert_reverts(
        fns.openSession(OTHER_CHARGER.address, 0), "ChargingPaymentsZeroDeposit", sender=v
    )


def test_openSession_revertsWhenPaused(world: World) -> None:
    send(world.pay.functions.pause(), sender=world.roles.admin.address)
    call = world.pay.functions.openSession(CHARGER_KEY.address, DEPOSIT)
    assert_reverts(call, "EnforcedPause", sender=VEHICLE.address)


def test_closeSession_paysTheStationFromTheAnchoredReadingAndRefundsTheRest(world: World) -> None:
    sid, opened = world.open()
    ev = world.meter(42_000, at_s=opened + 1)  # 42 kWh
    receipt = send(world.pay.functions.closeSession(sid, *ev.args()), sender=STATION.address)
    due = 42_000 * PRICE
    assert emitted(world.pay, receipt) == [
        (
            "SessionClosed",
            {"id": sid, "energyWh": 42_000, "amountDue": due, "refund": DEPOSIT - due},
        )
    ]
    assert world.session(sid)[3] == CLOSED
    assert world.pay.functions.activeSessionOf(CHARGER_KEY.address).call() == 0
    send(world.pay.functions.withdraw(), sender=STATION.address)
    send(world.pay.functions.withdraw(), sender=VEHICLE.address)
    assert world.token.functions.balanceOf(STATION.address).call() == due
    assert world.token.functions.balanceOf(VEHICLE.address).call() == 10 * DEPOSIT - due
    assert world.token.functions.balanceOf(world.pay.address).call() == 0


def test_closeSession_capsTheAmountAtTheDeposit(world: World) -> None:
    sid, opened = world.open()
    ev = world.meter(100_000, at_s=opened + 1)
    send(world.pay.functions.closeSession(sid, *ev.args()), sender=STATION.address)
    assert world.pay.functions.owed(STATION.address).call() == DEPOSIT
    assert world.pay.functions.owed(VEHICLE.address).call() == 0


def test_closeSession_revertsOnBadEvidence(world: World) -> None:
    sid, opened = world.open()
    fns, s = world.pay.functions, STATION.address
    early = world.meter(1_000, at_s=opened - 60)
    assert_reverts(
        fns.closeSession(sid, *early.args()),
        "ChargingPaymentsReadingTooEarly",
        sid,
        early.reading.timestamp,
        sender=s,
    )
    unanchored = world.meter(1_002, at_s=opened + 1, anchored=False)
    assert_reverts(
        fns.closeSession(sid, *unanchored.args()),
        "ChargingPaymentsRootNotAnchored",
        unanchored.root,
        sender=s,
    )
    forged = world.meter(1_001, at_s=opened + 1, key=make_account("charging-forger"))
    assert_reverts(
        fns.closeSession(sid, *forged.args()),
        "ChargingPaymentsInvalidSignature",
        CHARGER_KEY.address,
        sender=s,
    )
    good = world.meter(1_000, at_s=opened + 1)
    tampered = Evidence(
        good.reading.replace(values=(900,)), good.signature, good.root, good.proof, good.struct_hash
    )
    assert_reverts(
        fns.closeSession(sid, *tampered.args()), "ChargingPaymentsInvalidProof", sender=s
    )
    negative = world.meter(-5, at_s=opened + 1)
    assert_reverts(
        fns.closeSession(sid, *negative.args()), "ChargingPaymentsNegativeEnergy", -5, sender=s
    )
    wrong = Reading(OTHER_CHARGER.address, 1, (opened + 1) * 1000, CHARGER, (1_000,))
    (other,) = anchor_readings(
        world.w3,
        registry=world.registry,
        anchor=world.anchor,
        anchorer=world.roles.anchorer.address,
        signed=[(OTHER_CHARGER, wrong)],
        chain_id=world.chain_id,
    )
    assert_reverts(
        fns.closeSession(sid, *other.args()),
        "ChargingPaymentsWrongReading",
        sid,
        OTHER_CHARGER.address,
        sender=s,
    )
    cold = Reading(CHARGER_KEY.address, 1, (opened + 1) * 1000, COLDCHAIN, (400, 600))
    (schema,) = anchor_readings(
        world.w3,
        registry=world.registry,
        anchor=world.anchor,
        anchorer=world.roles.anchorer.address,
        signed=[(CHARGER_KEY, cold)],
        chain_id=world.chain_id,
    )
    assert_reverts(
        fns.closeSession(sid, *schema.args()),
        "ChargingPaymentsWrongReading",
        sid,
        CHARGER_KEY.address,
        sender=s,
    )
    assert_reverts(
        fns.closeSession(sid, *good.args()),
        "ChargingPaymentsNotStation",
        CHARGER_KEY.address,
        VEHICLE.address,
        sender=VEHICLE.address,
    )
    assert world.session(sid)[3] == OPEN


def test_closeSession_revertsAfterTheTimeoutAndWhenClosed(world: World) -> None:
    sid, opened = world.open()
    ev = world.meter(1_000, at_s=opened + 1)
    warp(world.w3, opened + TIMEOUT)
    call = world.pay.functions.closeSession(sid, *ev.args())
    assert_reverts(call, "ChargingPaymentsSessionExpired", sid, sender=STATION.address)
    send(world.pay.functions.refundExpired(sid), sender=world.roles.stranger.address)
    assert_reverts(call, "ChargingPaymentsNotOpen", sid, REFUNDED, sender=STATION.address)
    assert_reverts(
        world.pay.functions.closeSession(99, *ev.args()),
        "ChargingPaymentsUnknownSession",
        99,
        sender=STATION.address,
    )


def test_closeSession_revertsWhenPaused(world: World) -> None:
    sid, opened = world.open()
    ev = world.meter(1_000, at_s=opened + 1)
    send(world.pay.functions.pause(), sender=world.roles.admin.address)
    assert_reverts(
        world.pay.functions.closeSession(sid, *ev.args()), "EnforcedPause", sender=STATION.address
    )


def test_refundExpired_returnsTheWholeDepositAfterTheTimeout(world: World) -> None:
    sid, opened = world.open()
    call = world.pay.functions.refundExpired(sid)
    assert_reverts(
        call, "ChargingPaymentsNotExpired", sid, opened + TIMEOUT, sender=VEHICLE.address
    )
    warp(world.w3, opened + TIMEOUT)
    send(world.pay.functions.pause(), sender=world.roles.admin.address)  # a pause traps nothing
    receipt = send(call, sender=VEHICLE.address)
    assert emitted(world.pay, receipt) == [("SessionRefunded", {"id": sid, "refund": DEPOSIT})]
    send(world.pay.functions.withdraw(), sender=VEHICLE.address)
    assert world.token.functions.balanceOf(VEHICLE.address).call() == 10 * DEPOSIT
    assert world.pay.functions.activeSessionOf(CHARGER_KEY.address).call() == 0


def test_withdraw_revertsWhenNothingIsOwed(world: World) -> None:
    assert_reverts(
        world.pay.functions.withdraw(), "ChargingPaymentsNothingToWithdraw", sender=VEHICLE.address
    )


@pytest.fixture
def evil(w3: Web3, roles: Roles, chain_id: int, registry: Contract, anchor: Contract) -> World:
    return _world(w3, roles, chain_id, registry, anchor, "ReentrantToken")


def test_withdraw_blocksReentrancyThroughTheToken(evil: World) -> None:
    sid, opened = evil.open()
    warp(evil.w3, opened + TIMEOUT)
    send(evil.pay.functions.refundExpired(sid), sender=VEHICLE.address)
    send(
        evil.token.functions.arm(evil.pay.address, evil.pay.encode_abi("withdraw", args=[])),
        sender=VEHICLE.address,
    )
    call = evil.pay.functions.withdraw()
    assert_reverts(call, "ReentrancyGuardReentrantCall", sender=VEHICLE.address, mined=False)
    assert evil.pay.functions.owed(VEHICLE.address).call() == DEPOSIT


def test_openSession_blocksReentrancyThroughTheToken(evil: World) -> None:
    payload = evil.pay.encode_abi("openSession", args=[CHARGER_KEY.address, 1])
    send(evil.token.functions.arm(evil.pay.address, payload), sender=VEHICLE.address)
    call = evil.pay.functions.openSession(CHARGER_KEY.address, DEPOSIT)
    assert_reverts(call, "ReentrancyGuardReentrantCall", sender=VEHICLE.address, mined=False)
