"""EnergyMarket: deposits, orders (also by an opted-in agent), the on-chain uniform-price double
auction, delivery proven by anchored meter readings, the pro-rata shortfall rule with its rounding
remainder, pause, and reentrancy through a hostile token."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from tests.contracts.helpers import Reading, Roles, assert_reverts, emitted, make_account, send
from tests.contracts.settlement_helpers import (
    METER,
    Evidence,
    anchor_readings,
    deploy_any,
    now,
    warp,
)

pytestmark = [pytest.mark.chain, pytest.mark.usefixtures("isolated")]

INTERVAL = 900
SETTLEMENT = 900
FUNDS = 1_000_000
SELLER_1, SELLER_2, BUYER_1, BUYER_2 = (Account.from_key(k) for k in ANVIL_DEV_KEYS[5:9])
TREASURY = Account.from_key(ANVIL_DEV_KEYS[9])
METER_1, METER_2 = make_account("market-meter-1"), make_account("market-meter-2")
BID, ASK = 0, 1


@dataclass
class World:
    w3: Web3
    roles: Roles
    chain_id: int
    registry: Contract
    anchor: Contract
    token: Contract
    market: Contract
    interval: int

    @property
    def start(self) -> int:
        return self.interval * INTERVAL

    def bid(self, buyer: LocalAccount, qty: int, price: int) -> int:
        call = self.market.functions.placeBid(buyer.address, self.interval, qty, price)
        return int(emitted(self.market, send(call, sender=buyer.address))[0][1]["id"])

    def ask(self, seller: LocalAccount, meter: LocalAccount, qty: int, price: int) -> int:
        call = self.market.functions.placeAsk(
            seller.address, self.interval, meter.address, qty, price
        )
        return int(emitted(self.market, send(call, sender=seller.address))[0][1]["id"])

    def book(self) -> tuple[int, int, int, int]:
        """The scenario book: two asks, two bids; clears 3000 Wh at 110."""
        a1 = self.ask(SELLER_1, METER_1, 3_000, 100)
        a2 = self.ask(SELLER_2, METER_2, 2_000, 140)
        b1 = self.bid(BUYER_1, 2_500, 160)
        b2 = self.bid(BUYER_2, 2_000, 120)
        return a1, a2, b1, b2

    def meter(
        self, meter: LocalAccount, exported: int, *, at_s: int | None = None, anchored: bool = True
    ) -> Evidence:
        at = self.start + INTERVAL if at_s is None else at_s
        reading = Reading(meter.address, 1, at * 1000, METER, (0, exported))
        (ev,) = anchor_readings(
            self.w3,
            registry=self.registry,
            anchor=self.anchor if anchored else None,
            anchorer=self.roles.anchorer.address,
            signed=[(meter, reading)],
            chain_id=self.chain_id,
        )
        return ev

    def balance(self, who: LocalAccount) -> int:
        return int(self.market.functions.balanceOf(who.address).call())

    def order(self, oid: int) -> list[object]:
        return list(self.market.functions.orderOf(oid).call())


def _world(
    w3: Web3, roles: Roles, chain_id: int, registry: Contract, anchor: Contract, token_name: str
) -> World:
    admin = roles.admin.address
    args = (admin,) if token_name == "TestStablecoin" else ()
    token, _ = deploy_any(w3, token_name, *args, sender=admin)
    contracts = (token.address, registry.address, anchor.address)
    market, _ = deploy_any(
        w3, "EnergyMarket", admin, TREASURY.address, *contracts, INTERVAL, SETTLEMENT, sender=admin
    )
    for meter, owner in ((METER_1, SELLER_1), (METER_2, SELLER_2)):
        send(
            registry.functions.register(meter.address, owner.address, keccak(text="meter")),
            sender=roles.operator.address,
        )
    for buyer in (BUYER_1, BUYER_2):
        send(token.functions.mint(buyer.address, FUNDS), sender=admin)
        send(token.functions.approve(market.address, 2**256 - 1), sender=buyer.address)
        send(market.functions.deposit(FUNDS), sender=buyer.address)
    return World(
        w3, roles, chain_id, registry, anchor, token, market, interval=now(w3) // INTERVAL + 2
    )


@pytest.fixture
def world(w3: Web3, roles: Roles, chain_id: int, registry: Contract, anchor: Contract) -> World:
    return _world(w3, roles, chain_id, registry, anchor, "TestStablecoin")


def test_deposit_creditsTheFreeBalance(world: World) -> None:
    assert world.balance(BUYER_1) == FUNDS
    assert world.token.functions.balanceOf(world.market.address).call() == 2 * FUNDS


def test_deposit_revertsWhenPausedOrZero(world: World) -> None:
    assert_reverts(
        world.market.functions.deposit(0), "EnergyMarketInvalidOrder", sender=BUYER_1.address
    )
    send(world.market.functions.pause(), sender=world.roles.admin.address)
    assert_reverts(world.market.functions.deposit(1), "EnforcedPause", sender=BUYER_1.address)


def test_placeBid_reservesLimitTimesQuantity(world: World) -> None:
    oid = world.bid(BUYER_1, 2_500, 160)
    assert world.balance(BUYER_1) == FUNDS - 2_500 * 160
    assert world.order(oid) == [
        BUYER_1.address,
        BID,
        False,
        world.interval,
        "0x" + "00" * 20,
        2_500,
        0,
        0,
        160,
        400_000,
    ]


def test_placeBid_revertsOnBadInput(world: World) -> None:
    fns, b, iv = world.market.functions, BUYER_1.address, world.interval
    assert_reverts(
        fns.placeBid(b, iv, 10_000, 101),
        "EnergyMarketInsufficientBalance",
        1_010_000,
        FUNDS,
        sender=b,
    )
    assert_reverts(fns.placeBid(b, iv, 0, 1), "EnergyMarketInvalidOrder", sender=b)
    assert_reverts(
        fns.placeBid(BUYER_2.address, iv, 1, 1),
        "EnergyMarketNotAuthorized",
        BUYER_2.address,
        b,
        sender=b,
    )
    assert_reverts(fns.placeBid(b, iv - 2, 1, 1), "EnergyMarketOrdersClosed", iv - 2, sender=b)
    send(fns.pause(), sender=world.roles.admin.address)
    assert_reverts(fns.placeBid(b, iv, 1, 1), "EnforcedPause", sender=b)


def test_placeBid_byAnOptedInAgent(world: World) -> None:
    agent = world.roles.operator.address  # e.g. the platform's forecasting service
    receipt = send(world.market.functions.setAgent(agent, True), sender=BUYER_1.address)
    assert emitted(world.market, receipt) == [
        ("AgentSet", {"participant": BUYER_1.address, "agent": agent, "allowed": True})
    ]
    receipt = send(
        world.market.functions.placeBid(BUYER_1.address, world.interval, 100, 50), sender=agent
    )
    assert emitted(world.market, receipt)[0][1]["placedBy"] == agent
    assert world.balance(BUYER_1) == FUNDS - 5_000
    send(world.market.functions.setAgent(agent, False), sender=BUYER_1.address)
    call = world.market.functions.placeBid(BUYER_1.address, world.interval, 100, 50)
    assert_reverts(call, "EnergyMarketNotAuthorized", BUYER_1.address, agent, sender=agent)


def test_placeAsk_revertsForAMeterNotOwnedOrAlreadyOffered(world: World) -> None:
    fns, iv = world.market.functions, world.interval
    call = fns.placeAsk(SELLER_1.address, iv, METER_2.address, 1, 1)
    assert_reverts(call, "EnergyMarketNotMeterOwner", METER_2.address, sender=SELLER_1.address)
    world.ask(SELLER_1, METER_1, 10, 1)
    call = fns.placeAsk(SELLER_1.address, iv, METER_1.address, 1, 1)
    assert_reverts(
        call, "EnergyMarketMeterAlreadyOffered", METER_1.address, iv, sender=SELLER_1.address
    )


def test_clear_matchesAtAUniformPriceAndFreesUnusedReservations(world: World) -> None:
    a1, a2, b1, b2 = world.book()
    call = world.market.functions.clear(world.interval)
    assert_reverts(call, "EnergyMarketNotStarted", world.interval, sender=SELLER_1.address)
    warp(world.w3, world.start)
    receipt = send(call, sender=world.roles.stranger.address)
    assert emitted(world.market, receipt) == [
        ("IntervalCleared", {"interval": world.interval, "price": 110, "soldWh": 3_000})
    ]
    # B1 (2500 @ 160) and then B2 (500 of 2000 @ 120) buy S1's 3000 @ 100; S2 (@ 140) sells nothing.
    assert [world.order(i)[6] for i in (a1, a2, b1, b2)] == [3_000, 0, 2_500, 500]
    assert world.order(a2)[2] is True  # nothing to settle
    assert world.balance(BUYER_1) == FUNDS - 2_500 * 110
    assert world.balance(BUYER_2) == FUNDS - 500 * 110
    assert_reverts(call, "EnergyMarketAlreadyCleared", world.interval, sender=SELLER_1.address)


def test_clear_tradesNothingWhenBooksDoNotCross(world: World) -> None:
    world.ask(SELLER_1, METER_1, 1_000, 200)
    world.bid(BUYER_1, 1_000, 150)
    warp(world.w3, world.start)
    send(world.market.functions.clear(world.interval), sender=SELLER_1.address)
    assert list(world.market.functions.intervalOf(world.interval).call()) == [
        True,
        0,
        0,
        0,
        0,
        0,
        0,
    ]
    assert world.balance(BUYER_1) == FUNDS


def test_proveDelivery_paysForMeteredEnergyAndTheShortfallIsSharedProRata(world: World) -> None:
    a1, _, b1, b2 = world.book()
    warp(world.w3, world.start)
    send(world.market.functions.clear(world.interval), sender=SELLER_1.address)
    warp(world.w3, world.start + INTERVAL + 1)
    ev = world.meter(METER_1, 2_399)  # sold 3000 Wh, exported 2399 Wh
    receipt = send(
        world.market.functions.proveDelivery(a1, *ev.args()), sender=world.roles.stranger.address
    )
    assert emitted(world.market, receipt) == [
        (
            "DeliveryProven",
            {
                "id": a1,
                "meter": METER_1.address,
                "exportedWh": 2_399,
                "paidWh": 2_399,
                "amount": 2_399 * 110,
            },
        )
    ]
    assert world.balance(SELLER_1) == 2_399 * 110
    call = world.market.functions.finalizeBid(b1)
    deadline = world.start + INTERVAL + SETTLEMENT
    assert_reverts(
        call, "EnergyMarketSettlementOpen", world.interval, deadline, sender=BUYER_1.address
    )
    warp(world.w3, deadline)
    send(call, sender=BUYER_1.address)
    send(world.market.functions.finalizeBid(b2), sender=BUYER_1.address)
    # ceil(275000 * 2399 / 3000) = 219909 and ceil(55000 * 2399 / 3000) = 43982: 1 unit over.
    assert world.balance(BUYER_1) == FUNDS - 219_909
    assert world.balance(BUYER_2) == FUNDS - 43_982
    assert world.balance(TREASURY) == 219_909 + 43_982 - 2_399 * 110 == 1
    for who in (SELLER_1, BUYER_1, BUYER_2, TREASURY):
        send(world.market.functions.withdraw(), sender=who.address)
    assert world.token.functions.balanceOf(world.market.address).call() == 0
    assert_reverts(call, "EnergyMarketNothingToSettle", b1, sender=BUYER_1.address)


def test_proveDelivery_paysOnlyWhatWasSold(world: World) -> None:
    a1, *_ = world.book()
    warp(world.w3, world.start)
    send(world.market.functions.clear(world.interval), sender=SELLER_1.address)
    ev = world.meter(METER_1, 9_000)
    send(world.market.functions.proveDelivery(a1, *ev.args()), sender=SELLER_1.address)
    assert world.balance(SELLER_1) == 3_000 * 110
    assert world.order(a1)[7] == 3_000


def test_proveDelivery_revertsOnBadEvidence(world: World) -> None:
    a1, a2, b1, _ = world.book()
    fns, s = world.market.functions, SELLER_1.address
    ev = world.meter(METER_1, 3_000)
    assert_reverts(
        fns.proveDelivery(a1, *ev.args()), "EnergyMarketNotCleared", world.interval, sender=s
    )
    warp(world.w3, world.start)
    send(fns.clear(world.interval), sender=s)
    assert_reverts(fns.proveDelivery(b1, *ev.args()), "EnergyMarketUnknownOrder", b1, sender=s)
    assert_reverts(fns.proveDelivery(a2, *ev.args()), "EnergyMarketNothingToSettle", a2, sender=s)
    other = world.meter(METER_2, 3_000)
    assert_reverts(fns.proveDelivery(a1, *other.args()), "EnergyMarketWrongReading", a1, sender=s)
    late = world.meter(METER_1, 3_001, at_s=world.start + INTERVAL + 1)
    assert_reverts(fns.proveDelivery(a1, *late.args()), "EnergyMarketWrongReading", a1, sender=s)
    loose = world.meter(METER_1, 3_002, anchored=False)
    assert_reverts(
        fns.proveDelivery(a1, *loose.args()), "EnergyMarketRootNotAnchored", loose.root, sender=s
    )
    tampered = Evidence(
        ev.reading.replace(values=(0, 2_999)), ev.signature, ev.root, ev.proof, ev.struct_hash
    )
    assert_reverts(fns.proveDelivery(a1, *tampered.args()), "EnergyMarketInvalidProof", sender=s)
    forged_reading = Reading(METER_1.address, 9, world.start * 1000, METER, (0, 3_000))
    (forged,) = anchor_readings(
        world.w3,
        registry=world.registry,
        anchor=world.anchor,
        anchorer=world.roles.anchorer.address,
        signed=[(make_account("market-forger"), forged_reading)],
        chain_id=world.chain_id,
    )
    assert_reverts(
        fns.proveDelivery(a1, *forged.args()),
        "EnergyMarketInvalidSignature",
        METER_1.address,
        sender=s,
    )
    warp(world.w3, world.start + INTERVAL + SETTLEMENT)
    assert_reverts(
        fns.proveDelivery(a1, *ev.args()), "EnergyMarketSettlementClosed", world.interval, sender=s
    )


def test_finalizeBid_refundsEverythingWhenNothingIsDelivered(world: World) -> None:
    _, _, b1, b2 = world.book()
    warp(world.w3, world.start)
    send(world.market.functions.clear(world.interval), sender=SELLER_1.address)
    warp(world.w3, world.start + INTERVAL + SETTLEMENT)
    for b in (b1, b2):
        send(world.market.functions.finalizeBid(b), sender=SELLER_1.address)
    assert (world.balance(BUYER_1), world.balance(BUYER_2), world.balance(TREASURY)) == (
        FUNDS,
        FUNDS,
        0,
    )


def test_withdraw_revertsWhenNothingIsOwed(world: World) -> None:
    assert_reverts(
        world.market.functions.withdraw(), "EnergyMarketNothingToWithdraw", sender=SELLER_1.address
    )


def test_withdraw_blocksReentrancyThroughTheToken(
    w3: Web3, roles: Roles, chain_id: int, registry: Contract, anchor: Contract
) -> None:
    evil = _world(w3, roles, chain_id, registry, anchor, "ReentrantToken")
    payload = evil.market.encode_abi("withdraw", args=[])
    send(evil.token.functions.arm(evil.market.address, payload), sender=BUYER_1.address)
    call = evil.market.functions.withdraw()
    assert_reverts(call, "ReentrancyGuardReentrantCall", sender=BUYER_1.address, mined=False)
    assert evil.balance(BUYER_1) == FUNDS
