"""The scripted demo: a signed device fleet talks to a running platform through its HTTP API;
money moves through the settlement contracts, paid from anchored readings fetched as proofs.

Parties are the public Anvil dev accounts: 0 deployer, 1 operator (also the escrow oracle),
2 anchorer, then 3 shipper, 4 carrier, 5 an independent auditor (the third party who proves
the breach), 6-8 three homes (home C also drives the electric car), 9 the charging station.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from chainsense.chain.client import ChainClient, Signer
from chainsense.chain.deploy import Deployment
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.demo.fleet import (
    COLDCHAIN,
    DemoFleet,
    machine_history,
    meter_history,
)
from chainsense.demo.report import DemoResult, ProofRecord, TxRecord, tusd
from chainsense.errors import ChainSenseError
from chainsense.provenance.proof import ProofDocument
from chainsense.settlement import Evidence, ShipmentTerms, TxResult, open_settlement

__all__ = ["DemoError", "run_scenario"]

Say = Callable[[str], None]
PARTIES = {
    "shipper": 3, "carrier": 4, "auditor (third party)": 5, "home A": 6, "home B": 7,
    "home C / EV driver": 8, "charging station": 9,
}  # fmt: skip


class DemoError(ChainSenseError):
    """A demo step did not give what it should."""


class _Demo:
    def __init__(
        self, http: httpx.AsyncClient, client: ChainClient, deployment: Deployment, say: Say
    ) -> None:
        self.http, self.client, self.deployment, self.say = http, client, deployment, say
        self.settlement = open_settlement(client, deployment)
        self.signers = [Signer(client, k) for k in ANVIL_DEV_KEYS]
        self.fleet = DemoFleet.derive("scenario-" + str(time.time_ns()))
        self.result = DemoResult()
        self.registry = deployment.address("DeviceRegistry")

    # --- chain helpers ----------------------------------------------------------------------
    def signer(self, party: str) -> Signer:
        return self.signers[PARTIES[party]]

    async def chain_now(self) -> int:
        return int((await self.client.w3.eth.get_block("latest"))["timestamp"])

    async def rpc(self, method: str, *params: object) -> None:
        response = await self.client.w3.provider.make_request(method, list(params))
        if "error" in response:
            raise DemoError(f"{method}: {response['error']}")

    async def jump_to(self, timestamp: int, why: str) -> None:
        now = await self.chain_now()
        await self.rpc("evm_mine", timestamp)
        note = f"+{timestamp - now:,} s: {why}"
        self.result.time_jumps.append(note)
        self.say(f"  [dev chain time advanced {note}]")

    def tx(self, label: str, tx: TxResult) -> None:
        self.result.txs.append(TxRecord(label, tx.tx_hash, tx.gas_used))
        self.say(f"  tx {label}: {tx.tx_hash}")

    async def balances(self) -> dict[str, int]:
        token = self.settlement.escrow
        return {p: await token.token_balance(self.signer(p).address) for p in PARTIES}

    # --- API helpers ------------------------------------------------------------------------
    async def register(self, name: str, owner: str | None) -> None:
        body: dict[str, Any] = {"address": self.fleet.address(name)}
        if owner is not None:
            body["owner"] = owner
        response = await self.http.post("/v1/devices", json=body)
        if response.status_code != 201:
            raise DemoError(f"registering {name}: {response.status_code} {response.text}")
        self.say(f"  {name:<10} {body['address']}  (tx {response.json()['tx_hash']})")

    async def post(self, name: str, points: Sequence[tuple[int, tuple[int, ...]]]) -> list[int]:
        """Sign and POST readings of one device, in batches; return their reading ids."""
        chain_id = self.deployment.chain_id
        ids: list[int] = []
        for start in range(0, len(points), 1000):
            batch = [
                self.fleet.reading(name, t, v, chain_id=chain_id, registry=self.registry)
                for t, v in points[start : start + 1000]
            ]
            response = await self.http.post("/v1/readings", json={"readings": batch})
            body = response.json()
            if response.status_code != 200 or body["stored"] != len(batch):
                raise DemoError(f"readings of {name} refused: {response.text[:500]}")
            ids.extend(int(r["id"]) for r in body["results"])
        self.result.readings_posted += len(ids)
        return ids

    async def proof(self, name: str, reading_id: int, timeout: float = 60.0) -> Evidence:
        """Wait for the reading's anchored proof, verify it with POST /v1/verify?onchain=true,
        and return it as contract evidence."""
        deadline = time.monotonic() + timeout
        while True:
            response = await self.http.get(f"/v1/readings/{reading_id}/proof")
            if response.status_code == 200:
                break
            if response.status_code != 202 or time.monotonic() > deadline:
                raise DemoError(f"no proof of reading {reading_id}: {response.text[:300]}")
            await asyncio.sleep(0.5)
        document = response.json()
        verdict = (await self.http.post("/v1/verify?onchain=true", json=document)).json()
        passed = tuple(c["name"] for c in verdict["checks"] if c["ok"])
        self.result.proofs.append(ProofRecord(name, reading_id, bool(verdict["ok"]), passed))
        if not verdict["ok"]:
            raise DemoError(f"proof of reading {reading_id} failed: {verdict['failed']}")
        doc = ProofDocument.from_json(document)
        return Evidence(doc.reading, doc.signature, doc.root, doc.proof)

    # --- the story --------------------------------------------------------------------------
    async def setup(self) -> None:
        self.say("1. Devices: a signed fleet, registered through POST /v1/devices")
        owners = {
            "truck-1": "carrier", "truck-2": "carrier", "home-a": "home A", "home-b": "home B",
            "home-c": "home C / EV driver", "charger-1": "charging station",
        }  # fmt: skip
        for name in self.fleet.keys:
            owner = owners.get(name)
            await self.register(name, self.signer(owner).address if owner else None)
        self.result.parties = {p: self.signer(p).address for p in PARTIES}
        self.result.balances_before = await self.balances()
        now_ms = int(time.time() * 1000)
        self.say("2. History: 7 days of meter readings per home, 3 days of a machine (past times)")
        for seed, home in enumerate(("home-a", "home-b", "home-c")):
            await self.post(home, meter_history(seed, end_ms=now_ms - 900_000, days=7))
        await self.post("machine-1", machine_history(7, end_ms=now_ms))
        self.say(f"  {self.result.readings_posted} readings stored; the AI worker analyses them")

    async def cold_chain(self) -> None:
        self.say("3. Cold chain: two refrigerated trucks, 2.00-8.00 Cel, 500 tUSD each")
        escrow = self.settlement.escrow
        shipper, carrier = self.signer("shipper"), self.signer("carrier")
        start = await self.chain_now()
        shipments: dict[str, int] = {}
        for truck in ("truck-1", "truck-2"):
            terms = ShipmentTerms(
                carrier=carrier.address, loggers=[self.fleet.address(truck)], schema=COLDCHAIN,
                min_value=200, max_value=800, window_start_ms=start * 1000,
                window_end_ms=(start + 600) * 1000, payment=500_000_000,
                penalty_per_breach=50_000_000, max_penalty=200_000_000,
            )  # fmt: skip
            shipments[truck], tx = await escrow.open_shipment(shipper, terms)
            self.tx(f"openShipment {truck} (#{shipments[truck]})", tx)
        temps = {
            "truck-1": [410, 430, 450, 470, 460, 440, 430, 450, 470, 460],
            "truck-2": [450, 500, 600, 750, 860, 940, 830, 750, 600, 500],  # compressor fails
        }
        ids: dict[str, list[int]] = {}
        for truck, series in temps.items():
            points = [((start + 30 + 60 * i) * 1000, (t, 650)) for i, t in enumerate(series)]
            ids[truck] = await self.post(truck, points)
        self.say("  truck-2's logger reads 8.60, 9.40 and 8.30 Cel: out of range")
        breach_ids = [
            rid for rid, t in zip(ids["truck-2"], temps["truck-2"], strict=True) if t > 800
        ]
        evidence = [await self.proof("truck-2", rid) for rid in breach_ids]
        await self.proof("truck-1", ids["truck-1"][-1])
        await self.jump_to(start + 601, "shipment windows (10 min) end")
        oracle = self.signers[1]
        for truck, shipment in shipments.items():
            tx = await escrow.report_delivery(
                oracle, shipment, breaches=0, evidence_root=evidence[0].root
            )
            self.tx(f"reportDelivery {truck}: 0 breaches (oracle)", tx)
        self.say("  the oracle (operator key) reported truck-2 compliant; the auditor disagrees")
        auditor = self.signer("auditor (third party)")
        self.result.breach_claimant = auditor.address
        for item in evidence:
            tx = await escrow.claim_breach(auditor, shipments["truck-2"], item)
            self.tx(f"claimBreach truck-2 seq {item.reading.seq} (auditor)", tx)
        penalties = {t: await escrow.penalty(s) for t, s in shipments.items()}
        await self.jump_to(start + 601 + 3_601, "the 1 h challenge period ends")
        for truck, shipment in shipments.items():
            self.tx(f"settle {truck}", await escrow.settle(carrier, shipment))
        self.tx("withdraw (carrier, escrow)", await escrow.withdraw(carrier))
        self.tx("withdraw (shipper, escrow)", await escrow.withdraw(shipper))
        for truck, shipment in shipments.items():
            state = await escrow.shipment(shipment)
            self.result.shipments[truck] = {
                "id": shipment, "status": state.status.name, "reported": state.reported_breaches,
                "proven": state.proven_breaches, "penalty": penalties[truck][1],
            }  # fmt: skip
            self.say(f"  {truck}: {state.proven_breaches} proven breaches, penalty "
                     f"{tusd(penalties[truck][1])}")  # fmt: skip

    async def energy_market(self) -> None:
        self.say("4. Energy market: homes A and B sell solar export, home C buys")
        market = self.settlement.market
        a, b, c = self.signer("home A"), self.signer("home B"), self.signer("home C / EV driver")
        length = await market.interval_seconds()
        interval = await self.chain_now() // length + 2
        self.tx("deposit 0.5 tUSD (home C)", await market.deposit(c, 500_000))
        asks: dict[str, int] = {}
        for name, signer, meter, price in (
            ("home A", a, "home-a", 120),
            ("home B", b, "home-b", 140),
        ):
            asks[meter], tx = await market.place_ask(
                signer, interval=interval, meter=self.fleet.address(meter),
                quantity_wh=1_500, price_per_wh=price,
            )  # fmt: skip
            self.tx(f"placeAsk {name} 1500 Wh @ {price}", tx)
        bid, tx = await market.place_bid(c, interval=interval, quantity_wh=2_500, price_per_wh=180)
        self.tx("placeBid home C 2500 Wh @ 180", tx)
        await self.jump_to(interval * length, f"market interval {interval} starts (orders close)")
        self.tx(f"clear interval {interval}", await market.clear(c, interval))
        await self.jump_to((interval + 1) * length, f"interval {interval} ends (15 min)")
        taken = interval * length * 1000 + 600_000
        for meter, exported, signer in (("home-a", 1_500, a), ("home-b", 700, b)):
            (rid,) = await self.post(meter, [(taken, (10, exported))])
            evidence = await self.proof(meter, rid)
            tx = await market.prove_delivery(signer, asks[meter], evidence)
            self.tx(f"proveDelivery {meter}: {exported} Wh exported", tx)
        await self.jump_to((interval + 1) * length + 3_601, "the 1 h delivery period ends")
        self.tx("finalizeBid home C", await market.finalize_bid(c, bid))
        for name, signer in (("home A", a), ("home B", b), ("home C", c)):
            self.tx(f"withdraw ({name}, market)", await market.withdraw(signer))
        state = await market.interval(interval)
        self.result.market = {
            "interval": interval, "price": state.price, "sold_wh": state.sold_wh,
            "delivered_wh": state.delivered_wh,
        }  # fmt: skip
        self.say(f"  cleared at {state.price} units/Wh; {state.sold_wh} Wh sold, "
                 f"{state.delivered_wh} Wh delivered (home B fell 300 Wh short)")  # fmt: skip

    async def charging(self) -> None:
        self.say("5. Charging: home C's car charges at the station, 0.00025 tUSD/Wh")
        charging = self.settlement.charging
        station, vehicle = self.signer("charging station"), self.signer("home C / EV driver")
        charger = self.fleet.address("charger-1")
        self.tx("setPrice 250 units/Wh", await charging.set_price(station, charger, 250))
        session, tx = await charging.open_session(vehicle, charger, 15_000_000)
        self.tx(f"openSession #{session} deposit 15 tUSD", tx)
        opened = (await charging.session(session)).opened_at
        (rid,) = await self.post("charger-1", [((opened + 1_800) * 1000, (36_000,))])
        evidence = await self.proof("charger-1", rid)
        self.tx(
            "closeSession (36,000 Wh)", await charging.close_session(station, session, evidence)
        )
        self.tx("withdraw (station)", await charging.withdraw(station))
        self.tx("withdraw (vehicle refund)", await charging.withdraw(vehicle))
        state = await charging.session(session)
        self.result.charging = {
            "id": session, "energy_wh": state.energy_wh, "amount_due": state.amount_due,
            "deposit": state.deposit, "status": state.status.name,
        }  # fmt: skip

    async def ai(self, timeout: float = 120.0) -> None:
        self.say("6. AI: the machine's vibration drifts; anomalies, health and forecast")
        deadline = time.monotonic() + timeout
        while True:
            status = (await self.http.get("/v1/ai/status")).json()
            if status["lag_readings"] == 0 and status["cursor"] >= status["newest_reading_id"]:
                break
            if time.monotonic() > deadline:
                raise DemoError(f"the AI worker did not catch up: {status}")
            await asyncio.sleep(0.5)
        machine = self.fleet.address("machine-1")
        page = await self.http.get("/v1/anomalies", params={"device": machine, "limit": 1000})
        self.result.anomalies = page.json()["items"]
        health = await self.http.get(f"/v1/devices/{machine}/health")
        self.result.health = health.json() if health.status_code == 200 else {}
        meter = self.fleet.address("home-a")
        forecast = await self.http.get(f"/v1/devices/{meter}/forecast", params={"intervals": 96})
        self.result.forecast = forecast.json() if forecast.status_code == 200 else {}
        self.say(f"  {len(self.result.anomalies)} anomaly events on machine-1")


async def run_scenario(
    http: httpx.AsyncClient, client: ChainClient, deployment: Deployment, say: Say
) -> DemoResult:
    """Run the whole story against the platform behind ``http`` (base URL and an operator API
    key set) and the chain of ``client``; print as it goes through ``say``."""
    demo = _Demo(http, client, deployment, say)
    await demo.setup()
    await demo.cold_chain()
    await demo.energy_market()
    await demo.charging()
    await demo.ai()
    demo.result.balances_after = await demo.balances()
    demo.result.summary(say)
    return demo.result
