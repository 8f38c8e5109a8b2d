"""The settlement clients end to end on Anvil: evidence built with chainsense.provenance,
roots anchored with the anchorer key, a breach proven through the client without the oracle's
cooperation, and contract errors arriving as settlement errors."""

from __future__ import annotations

import pytest

from chainsense.identity import Reading, sign_reading
from chainsense.identity.keys import DeviceKey
from chainsense.settlement import (
    DeadlineError,
    Evidence,
    EvidenceRejectedError,
    InsufficientFundsError,
    NotAuthorizedError,
    SessionStatus,
    ShipmentStatus,
    ShipmentTerms,
    batch_evidence,
)
from chainsense.telemetry.schemas import BUILTIN_SCHEMAS
from tests.settlement.conftest import Env

pytestmark = pytest.mark.chain

COLDCHAIN = BUILTIN_SCHEMAS.by_name("chainsense.coldchain.v1").id
CHARGER = BUILTIN_SCHEMAS.by_name("chainsense.charger.v1").id


async def _register(env: Env, key: DeviceKey, owner: str) -> None:
    registry = env.client.contract("DeviceRegistry", env.deployment.address("DeviceRegistry"))
    fn = registry.functions.register(key.address, owner, b"\x00" * 32)
    await env.signers[1].transact(fn)


async def _anchor(env: Env, key: DeviceKey, readings: list[Reading]) -> list[Evidence]:
    registry = env.deployment.address("DeviceRegistry")
    signed = [(r, sign_reading(key.private_key, r, 31337, registry)) for r in readings]
    root, evidence = batch_evidence(signed)
    anchor = env.client.contract("ReadingAnchor", env.deployment.address("ReadingAnchor"))
    await env.signers[2].transact(anchor.functions.anchor(root, len(readings), root))
    return evidence


async def _now(env: Env) -> int:
    return int((await env.client.w3.eth.get_block("latest"))["timestamp"])


async def test_escrow_breachIsProvenThroughTheClientDespiteACompliantReport(env: Env) -> None:
    escrow, (shipper, carrier, stranger, oracle) = (
        env.settlement.escrow,
        (env.signers[5], env.signers[6], env.signers[3], env.signers[1]),
    )
    logger = DeviceKey.generate()
    await _register(env, logger, shipper.address)
    start = await _now(env)
    terms = ShipmentTerms(
        carrier=carrier.address, loggers=[logger.address], schema=COLDCHAIN,
        min_value=200, max_value=800, window_start_ms=start * 1000,
        window_end_ms=(start + 600) * 1000, payment=500_000_000,
        penalty_per_breach=50_000_000, max_penalty=200_000_000,
    )  # fmt: skip
    shipper_before = await escrow.token_balance(shipper.address)
    carrier_before = await escrow.token_balance(carrier.address)
    shipment, opened = await escrow.open_shipment(shipper, terms)
    assert opened.tx_hash.startswith("0x")
    readings = [
        Reading(logger.address, i + 1, (start + 60 * i) * 1000, COLDCHAIN, (400 + 250 * i, 600))
        for i in range(4)
    ]  # 4.00, 6.50, 9.00 (breach), 11.50 (breach) Cel
    evidence = await _anchor(env, logger, readings)

    with pytest.raises(EvidenceRejectedError) as in_range:
        await escrow.claim_breach(stranger, shipment, evidence[0])
    assert in_range.value.error_name == "ColdChainEscrowValueInRange"

    await env.rpc("evm_increaseTime", 601)
    await env.rpc("evm_mine")
    await escrow.report_delivery(oracle, shipment, breaches=0, evidence_root=evidence[0].root)
    with pytest.raises(NotAuthorizedError):
        await escrow.report_delivery(stranger, shipment, breaches=0, evidence_root=b"\1" * 32)

    await escrow.claim_breach(stranger, shipment, evidence[2])
    await escrow.claim_breach(stranger, shipment, evidence[3])
    with pytest.raises(EvidenceRejectedError) as twice:
        await escrow.claim_breach(stranger, shipment, evidence[3])
    assert twice.value.error_name == "ColdChainEscrowAlreadyClaimed"
    assert await escrow.penalty(shipment) == (2, 100_000_000)

    with pytest.raises(DeadlineError):
        await escrow.settle(carrier, shipment)
    await env.rpc("evm_increaseTime", 3_601)
    await env.rpc("evm_mine")
    await escrow.settle(carrier, shipment)
    state = await escrow.shipment(shipment)
    assert (state.status, state.proven_breaches, state.reported_breaches) == (
        ShipmentStatus.SETTLED, 2, 0,
    )  # fmt: skip
    await escrow.withdraw(carrier)
    await escrow.withdraw(shipper)
    with pytest.raises(InsufficientFundsError):
        await escrow.withdraw(carrier)
    assert await escrow.token_balance(carrier.address) == carrier_before + 400_000_000
    assert await escrow.token_balance(shipper.address) == shipper_before - 400_000_000


async def test_charging_sessionIsPaidFromTheChargersAnchoredReading(env: Env) -> None:
    charging, station, vehicle = env.settlement.charging, env.signers[7], env.signers[8]
    charger = DeviceKey.generate()
    await _register(env, charger, station.address)
    await charging.set_price(station, charger.address, 250)
    session, _ = await charging.open_session(vehicle, charger.address, 15_000_000)
    opened = (await charging.session(session)).opened_at
    (evidence,) = await _anchor(
        env, charger, [Reading(charger.address, 1, (opened + 5) * 1000, CHARGER, (36_000,))]
    )
    before = await charging.token_balance(station.address)
    await charging.close_session(station, session, evidence)
    state = await charging.session(session)
    assert (state.status, state.energy_wh, state.amount_due) == (
        SessionStatus.CLOSED, 36_000, 9_000_000,
    )  # fmt: skip
    await charging.withdraw(station)
    assert await charging.token_balance(station.address) == before + 9_000_000
    assert await charging.owed(vehicle.address) == 6_000_000


async def test_market_paysTheSellerForMeteredDelivery(env: Env) -> None:
    market, seller, buyer = env.settlement.market, env.signers[4], env.signers[9]
    meter = DeviceKey.generate()
    await _register(env, meter, seller.address)
    length = await market.interval_seconds()
    interval = await _now(env) // length + 2
    await market.deposit(buyer, 1_000_000)
    ask, _ = await market.place_ask(
        seller, interval=interval, meter=meter.address, quantity_wh=2_000, price_per_wh=100
    )
    await market.place_bid(buyer, interval=interval, quantity_wh=2_000, price_per_wh=150)
    await env.rpc("evm_mine", interval * length)
    await market.clear(buyer, interval)
    assert (await market.interval(interval)).price == 125
    meter_reading = Reading(
        meter.address,
        1,
        (interval + 1) * length * 1000,
        BUILTIN_SCHEMAS.by_name("chainsense.meter.v1").id,
        (0, 1_500),
    )
    (evidence,) = await _anchor(env, meter, [meter_reading])
    before = await market.balance_of(seller.address)
    await market.prove_delivery(seller, ask, evidence)
    assert await market.balance_of(seller.address) == before + 1_500 * 125
