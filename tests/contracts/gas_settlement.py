"""The settlement part of the gas report scenario (see ``test_gas_report.py``): one shipment with
a breach proven on-chain, one charging session, one market interval with four orders, and the
largest clearing (full order books)."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak
from web3 import Web3

from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from tests.contracts.helpers import Reading, Roles, make_account, send
from tests.contracts.settlement_helpers import (
    CHARGER,
    COLDCHAIN,
    METER,
    anchor_readings,
    deploy_any,
    now,
    warp,
)

__all__ = ["scenario"]

Row = tuple[str, str, int]
SHIPPER, CARRIER, STATION, VEHICLE = (Account.from_key(k) for k in ANVIL_DEV_KEYS[5:9])
INTERVAL = 900


def scenario(w3: Web3, roles: Roles, chain_id: int, *, clock: int) -> list[Row]:
    """Runs from block time ``clock`` (s); every time that reaches calldata derives from it."""
    admin, operator, anchorer = roles.admin.address, roles.operator.address, roles.anchorer.address
    rows: list[Row] = []

    def tx(contract: str, label: str, call: object, sender: str) -> None:
        rows.append((contract, label, send(call, sender=sender)["gasUsed"]))  # type: ignore[arg-type]

    registry, _ = deploy_any(w3, "DeviceRegistry", admin, operator, sender=admin)
    anchor, _ = deploy_any(w3, "ReadingAnchor", admin, anchorer, sender=admin)
    token, receipt = deploy_any(w3, "TestStablecoin", admin, sender=admin)
    rows.append(("TestStablecoin", "deployment", receipt["gasUsed"]))
    core = (token.address, registry.address, anchor.address)
    escrow, receipt = deploy_any(
        w3, "ColdChainEscrow", admin, operator, *core, 3_600, 10**9, sender=admin
    )
    rows.append(("ColdChainEscrow", "deployment", receipt["gasUsed"]))
    market, receipt = deploy_any(
        w3, "EnergyMarket", admin, admin, *core, INTERVAL, INTERVAL, sender=admin
    )
    rows.append(("EnergyMarket", "deployment", receipt["gasUsed"]))
    pay, receipt = deploy_any(w3, "ChargingPayments", admin, *core, 14_400, sender=admin)
    rows.append(("ChargingPayments", "deployment", receipt["gasUsed"]))

    logger, meter, charger = (make_account(f"gas-{n}") for n in ("logger", "meter", "charger"))
    for device, owner in ((logger, admin), (meter, CARRIER.address), (charger, STATION.address)):
        send(
            registry.functions.register(device.address, owner, keccak(text="gas")), sender=operator
        )
    for who in (SHIPPER, VEHICLE, STATION):
        tx("TestStablecoin", "mint", token.functions.mint(who.address, 10**12), admin)
        send(token.functions.approve(escrow.address, 2**256 - 1), sender=who.address)
        send(token.functions.approve(pay.address, 2**256 - 1), sender=who.address)
        send(token.functions.approve(market.address, 2**256 - 1), sender=who.address)
    del rows[-2:]  # one mint row is enough
    t0 = clock

    # ColdChainEscrow: a 2-hour window that has ended, 16 readings in the batch, one breach.
    start_ms = (t0 - 7_200) * 1000
    terms = (
        CARRIER.address, [logger.address], COLDCHAIN, 0, 200, 800,
        start_ms, start_ms + 7_200_000, 10**9, 10**8, 3 * 10**8,
    )  # fmt: skip
    tx(
        "ColdChainEscrow",
        "openShipment (1 logger)",
        escrow.functions.openShipment(terms),
        SHIPPER.address,
    )
    readings = [
        (
            logger,
            Reading(logger.address, i + 1, start_ms + i * 60_000, COLDCHAIN, (450 + 60 * i, 620)),
        )
        for i in range(16)
    ]
    evidence = anchor_readings(
        w3, registry=registry, anchor=anchor, anchorer=anchorer, signed=readings, chain_id=chain_id
    )
    call = escrow.functions.reportDelivery(1, True, 0, evidence[0].root)
    tx("ColdChainEscrow", "reportDelivery", call, operator)
    call = escrow.functions.claimBreach(1, *evidence[-1].args())
    tx(
        "ColdChainEscrow",
        "claimBreach (proof of breach, 16-leaf tree)",
        call,
        roles.stranger.address,
    )
    warp(w3, now(w3) + 3_600)
    tx("ColdChainEscrow", "settle", escrow.functions.settle(1), CARRIER.address)
    tx("ColdChainEscrow", "withdraw", escrow.functions.withdraw(), CARRIER.address)

    # ChargingPayments: one session closed with the charger's reading in a 16-leaf batch.
    tx(
        "ChargingPayments",
        "setPrice",
        pay.functions.setPrice(charger.address, 300),
        STATION.address,
    )
    call = pay.functions.openSession(charger.address, 20_000_000)
    tx("ChargingPayments", "openSession", call, VEHICLE.address)
    at_ms = (t0 + 100_000) * 1000  # well after the session opens, whatever blocks came before
    batch = [
        (charger, Reading(charger.address, i + 1, at_ms + i, CHARGER, (1_000 * (i + 1),)))
        for i in range(16)
    ]
    evidence = anchor_readings(
        w3, registry=registry, anchor=anchor, anchorer=anchorer, signed=batch, chain_id=chain_id
    )
    call = pay.functions.closeSession(1, *evidence[-1].args())
    tx("ChargingPayments", "closeSession (16-leaf tree)", call, STATION.address)
    tx("ChargingPayments", "withdraw", pay.functions.withdraw(), STATION.address)

    # EnergyMarket: two asks, two bids, cleared, one delivery proven, both bids finalized.
    interval = t0 // INTERVAL + 200
    begin = interval * INTERVAL
    tx("EnergyMarket", "deposit", market.functions.deposit(10**9), SHIPPER.address)
    send(market.functions.deposit(10**9), sender=VEHICLE.address)
    send(
        registry.functions.register(
            make_account("gas-meter-2").address, STATION.address, b"\0" * 32
        ),
        sender=operator,
    )
    call = market.functions.placeAsk(CARRIER.address, interval, meter.address, 3_000, 100)
    tx("EnergyMarket", "placeAsk", call, CARRIER.address)
    meter2 = make_account("gas-meter-2").address
    send(
        market.functions.placeAsk(STATION.address, interval, meter2, 2_000, 140),
        sender=STATION.address,
    )
    call = market.functions.placeBid(SHIPPER.address, interval, 2_500, 160)
    tx("EnergyMarket", "placeBid", call, SHIPPER.address)
    send(market.functions.placeBid(VEHICLE.address, interval, 2_000, 120), sender=VEHICLE.address)
    warp(w3, begin)
    tx("EnergyMarket", "clear (2 bids, 2 asks)", market.functions.clear(interval), admin)
    batch = [
        (meter, Reading(meter.address, i + 1, begin * 1000 + i, METER, (0, 2_400 + i)))
        for i in range(16)
    ]
    evidence = anchor_readings(
        w3, registry=registry, anchor=anchor, anchorer=anchorer, signed=batch, chain_id=chain_id
    )
    call = market.functions.proveDelivery(1, *evidence[0].args())
    tx("EnergyMarket", "proveDelivery (16-leaf tree)", call, CARRIER.address)
    warp(w3, begin + 2 * INTERVAL)
    tx("EnergyMarket", "finalizeBid", market.functions.finalizeBid(3), SHIPPER.address)
    send(market.functions.finalizeBid(4), sender=SHIPPER.address)
    tx("EnergyMarket", "withdraw", market.functions.withdraw(), CARRIER.address)
    rows.extend(_full_book(w3, market, registry, operator, interval + 10))
    return rows


def _full_book(w3: Web3, market: Any, registry: Any, operator: str, interval: int) -> list[Row]:
    """The largest clearing: MAX_ORDERS_PER_SIDE bids and asks, all crossing, each placed at
    the far end of its sorted book (bids ascending, asks descending), so the insertion sort
    shifts every earlier order and the match walks every pair."""
    n = int(market.functions.MAX_ORDERS_PER_SIDE().call())
    for k in range(n):
        meter = make_account(f"gas-book-meter-{k}").address
        send(registry.functions.register(meter, CARRIER.address, b"\0" * 32), sender=operator)
        send(market.functions.placeAsk(CARRIER.address, interval, meter, 100, 199 - k),
             sender=CARRIER.address)  # fmt: skip
        send(market.functions.placeBid(SHIPPER.address, interval, 100, 200 + k),
             sender=SHIPPER.address)  # fmt: skip
    warp(w3, interval * INTERVAL)
    receipt = send(market.functions.clear(interval), sender=CARRIER.address)
    return [("EnergyMarket", f"clear ({n} bids, {n} asks, all crossing; worst order)",
             receipt["gasUsed"])]  # fmt: skip
