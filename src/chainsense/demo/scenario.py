"""The scripted demo: a signed device fleet talks to a running platform through its HTTP API;
money moves through the settlement contracts, paid from anchored readings fetched as proofs.

Every step goes through the API (users' wallet actions through its dev-chain routes), except
the auditor's breach claims: the auditor sends those from its own wallet straight to the escrow,
with nothing but the public proofs, to show a breach needs no cooperation from the operator.

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
    DemoFleet,
    machine_history,
    meter_history,
)
from chainsense.demo.report import DemoResult, ProofRecord, TxRecord, tusd
from chainsense.errors import ChainSenseError
from chainsense.provenance.proof import ProofDocument
from chainsense.settlement import Evidence, TxResult, open_settlement

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

    # --- API helpers ------------------------------------------------------------------------
    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, status: int = 200
    ) -> Any:
        """One API request; anything but ``status`` stops the demo with the problem."""
        response = await self.http.request(method, path, json=body)
        if response.status_code != status:
            raise DemoError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def tx(self, label: str, tx: dict[str, Any]) -> None:
        """Record a mined transaction from an API answer (``tx_hash``, ``gas_used``)."""
        self.result.txs.append(TxRecord(label, tx["tx_hash"], tx["gas_used"]))
        self.say(f"  tx {label}: {tx['tx_hash']}")

    def own_tx(self, label: str, tx: TxResult) -> None:
        """Record a transaction a party sent from its own wallet, without the platform."""
        self.tx(label, {"tx_hash": tx.tx_hash, "gas_used": tx.gas_used})

    async def withdraw(self, party: str, contract: str) -> None:
        body = {"account": PARTIES[party], "contract": contract}
        done = await self.call("POST", "/v1/settlement/withdrawals", body)
        self.tx(f"withdraw ({party}, {contract})", done["tx"])

    async def balances(self) -> dict[str, int]:
        out = {}
        for party in PARTIES:
            address = self.signer(party).address
            out[party] = (await self.call("GET", f"/v1/settlement/balances/{address}"))["wallet"]
        return out

    async def register(self, name: str, owner: str | None) -> None:
        body: dict[str, Any] = {"address": self.fleet.address(name)}
        if owner is not None:
            body["owner"] = owner
        registered = await self.call("POST", "/v1/devices", body, status=201)
        self.say(f"  {name:<10} {body['address']}  (tx {registered['tx_hash']})")

    async def post(self, name: str, points: Sequence[tuple[int, tuple[int, ...]]]) -> list[int]:
        """Sign and POST readings of one device, in batches; return their reading ids."""
        chain_id = self.deployment.chain_id
        ids: list[int] = []
        for start in range(0, len(points), 1000):
            batch = [
                self.fleet.reading(name, t, v, chain_id=chain_id, registry=self.registry)
                for t, v in points[start : start + 1000]
            ]
            body = await self.call("POST", "/v1/readings", {"readings": batch})
            if body["stored"] != len(batch):
                raise DemoError(f"readings of {name} refused: {str(body)[:500]}")
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
        verdict = await self.call("POST", "/v1/verify?onchain=true", document)
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
        end = now_ms - 900_000
        await self.post("home-a", meter_history(0, end_ms=end, days=7))
        await self.post("home-b", meter_history(1, end_ms=end, days=7))
        # home C has no solar panels, and a heat pump and a wallbox that draw ~9 kW
        await self.post("home-c", meter_history(2, end_ms=end, days=7, solar=False,
                                                base_load_wh=2_300))  # fmt: skip
        await self.post("machine-1", machine_history(7, end_ms=now_ms))
        self.say(f"  {self.result.readings_posted} readings stored; the AI worker analyses them")

    async def cold_chain(self) -> None:
        self.say("3. Cold chain: two refrigerated trucks, 2.00-8.00 Cel, 500 tUSD each")
        carrier = self.signer("carrier")
        start = await self.chain_now()
        shipments: dict[str, int] = {}
        for truck in ("truck-1", "truck-2"):
            terms = {
                "account": PARTIES["shipper"], "carrier": carrier.address,
                "loggers": [self.fleet.address(truck)], "min_value": 200, "max_value": 800,
                "window_start_ms": start * 1000, "window_end_ms": (start + 600) * 1000,
                "payment": 500_000_000, "penalty_per_breach": 50_000_000,
                "max_penalty": 200_000_000,
            }  # fmt: skip
            opened = await self.call("POST", "/v1/shipments", terms, status=201)
            shipments[truck] = opened["id"]
            self.tx(f"openShipment {truck} (#{opened['id']})", opened["tx"])
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
        done = await self.call("POST", f"/v1/shipments/{shipments['truck-1']}/delivery")
        found = done["compliance"]
        self.tx(f"reportDelivery truck-1: {found['breaches']} breaches (oracle, computed)",
                done["tx"])  # fmt: skip
        self.say(f"  the oracle counted truck-1's {found['readings']} readings: compliant")
        found = await self.call("GET", f"/v1/shipments/{shipments['truck-2']}/compliance")
        self.say(f"  for truck-2 it counts {found['breaches']} breaches in {found['readings']} "
                 "readings, but suppose a dishonest operator reports it compliant:")  # fmt: skip
        report = {"breaches": 0, "evidence_root": found["evidence_root"]}
        done = await self.call("POST", f"/v1/shipments/{shipments['truck-2']}/delivery", report)
        self.tx("reportDelivery truck-2: 0 breaches (operator's override)", done["tx"])
        self.say("  the auditor proves each breach from its own wallet, with the public proofs")
        auditor = self.signer("auditor (third party)")
        self.result.breach_claimant = auditor.address
        escrow = self.settlement.escrow
        for item in evidence:
            tx = await escrow.claim_breach(auditor, shipments["truck-2"], item)
            self.own_tx(f"claimBreach truck-2 seq {item.reading.seq} (auditor)", tx)
        penalties = {
            t: (await self.call("GET", f"/v1/shipments/{s}"))["penalty"]
            for t, s in shipments.items()
        }
        await self.jump_to(start + 601 + 3_601, "the 1 h challenge period ends")
        for truck, shipment in shipments.items():
            done = await self.call("POST", f"/v1/shipments/{shipment}/settle")
            self.tx(f"settle {truck}", done["tx"])
        await self.withdraw("carrier", "escrow")
        await self.withdraw("shipper", "escrow")
        for truck, shipment in shipments.items():
            state = await self.call("GET", f"/v1/shipments/{shipment}")
            self.result.shipments[truck] = {
                "id": shipment, "status": state["status"], "reported": state["reported_breaches"],
                "proven": state["proven_breaches"], "penalty": penalties[truck],
            }  # fmt: skip
            self.say(f"  {truck}: {state['proven_breaches']} proven breaches, penalty "
                     f"{tusd(penalties[truck])}")  # fmt: skip

    async def energy_market(self) -> None:
        self.say("4. Energy market: homes A and B sell solar export; home C's AI agent buys")
        c = self.signer("home C / EV driver")
        market = await self.call("GET", "/v1/market")
        length = market["interval_seconds"]
        interval = await self.chain_now() // length + 2
        deposit = {"account": PARTIES["home C / EV driver"], "amount": 600_000}
        self.tx("deposit 0.6 tUSD (home C)",
                (await self.call("POST", "/v1/market/deposits", deposit))["tx"])  # fmt: skip
        asks: dict[str, int] = {}
        for party, meter, price in (("home A", "home-a", 120), ("home B", "home-b", 140)):
            order = {
                "account": PARTIES[party], "side": "ask", "interval": interval,
                "meter": self.fleet.address(meter), "quantity_wh": 1_500, "price_per_wh": price,
            }  # fmt: skip
            placed = await self.call("POST", "/v1/market/orders", order, status=201)
            asks[meter] = placed["id"]
            self.tx(f"placeAsk {party} 1500 Wh @ {price}", placed["tx"])
        mandate = {
            "meter": self.fleet.address("home-c"), "ask_price": 100, "bid_price": 180,
            "account": PARTIES["home C / EV driver"],
        }  # fmt: skip
        opted = await self.call("PUT", f"/v1/market/agents/{c.address}", mandate)
        self.tx("setAgent (home C opts in to the AI agent)", opted["set_agent_tx"])
        bid = await self.call(
            "POST", f"/v1/market/agents/{c.address}/orders", {"interval": interval}
        )
        if bid["side"] != "bid":
            raise DemoError(f"the agent did not bid for home C: {bid}")
        receipt = await self.client.w3.eth.get_transaction_receipt(bid["tx_hash"])
        self.tx(f"placeBid home C {bid['quantity_wh']} Wh @ 180 (AI agent)",
                {"tx_hash": bid["tx_hash"], "gas_used": receipt["gasUsed"]})  # fmt: skip
        self.say(f"  the agent (operator key, allowed by home C's setAgent): {bid['note']}")
        await self.jump_to(interval * length, f"market interval {interval} starts (orders close)")
        cleared = await self.call("POST", f"/v1/market/intervals/{interval}/clear")
        self.tx(f"clear interval {interval}", cleared["tx"])
        await self.jump_to((interval + 1) * length, f"interval {interval} ends (15 min)")
        taken = interval * length * 1000 + 600_000
        for meter, exported in (("home-a", 1_500), ("home-b", 700)):
            (rid,) = await self.post(meter, [(taken, (10, exported))])
            await self.proof(meter, rid)
            done = await self.call(
                "POST", f"/v1/market/orders/{asks[meter]}/delivery", {"reading_id": rid}
            )
            self.tx(f"proveDelivery {meter}: {exported} Wh exported", done)
        await self.jump_to((interval + 1) * length + 3_601, "the 1 h delivery period ends")
        done = await self.call("POST", f"/v1/market/orders/{bid['order_id']}/finalize")
        self.tx("finalizeBid home C", done)
        for party in ("home A", "home B", "home C / EV driver"):
            await self.withdraw(party, "market")
        state = await self.call("GET", f"/v1/market/intervals/{interval}")
        self.result.market = {
            "interval": interval, "price": state["price"], "sold_wh": state["sold_wh"],
            "delivered_wh": state["delivered_wh"], "agent_bid_wh": bid["quantity_wh"],
            "agent_note": bid["note"],
        }  # fmt: skip
        self.say(f"  cleared at {state['price']} units/Wh; {state['sold_wh']} Wh sold, "
                 f"{state['delivered_wh']} Wh delivered (home B fell short)")  # fmt: skip

    async def charging(self) -> None:
        self.say("5. Charging: home C's car charges at the station, 0.00025 tUSD/Wh")
        charger = self.fleet.address("charger-1")
        station, vehicle = PARTIES["charging station"], PARTIES["home C / EV driver"]
        price = {"account": station, "price_per_wh": 250}
        priced = await self.call("PUT", f"/v1/charging/chargers/{charger}/price", price)
        self.tx("setPrice 250 units/Wh", priced)
        body = {"account": vehicle, "charger": charger, "deposit": 15_000_000}
        opened = await self.call("POST", "/v1/charging/sessions", body, status=201)
        session = opened["session"]
        self.tx(f"openSession #{session['id']} deposit 15 tUSD", opened["tx"])
        (rid,) = await self.post("charger-1", [((session["opened_at"] + 1_800) * 1000, (36_000,))])
        await self.proof("charger-1", rid)
        close = {"reading_id": rid, "account": station}
        closed = await self.call("POST", f"/v1/charging/sessions/{session['id']}/close", close)
        self.tx("closeSession (36,000 Wh)", closed["tx"])
        await self.withdraw("charging station", "charging")
        await self.withdraw("home C / EV driver", "charging")
        state = closed["session"]
        self.result.charging = {
            "id": state["id"], "energy_wh": state["energy_wh"], "amount_due": state["amount_due"],
            "deposit": state["deposit"], "status": state["status"],
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
