"""What the demo did, recorded as it goes, and its printed summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DemoResult", "ProofRecord", "TxRecord", "tusd"]


def tusd(units: int) -> str:
    """Token units (6 decimals) as tUSD.

    >>> tusd(1_500_000), tusd(-250)
    ('1.500000 tUSD', '-0.000250 tUSD')
    """
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**6)
    return f"{sign}{whole:,}.{frac:06d} tUSD"


@dataclass(frozen=True)
class TxRecord:
    label: str
    tx_hash: str
    gas_used: int


@dataclass(frozen=True)
class ProofRecord:
    device: str
    reading_id: int
    ok: bool
    checks: tuple[str, ...]
    """Names of the checks POST /v1/verify?onchain=true ran and passed."""


@dataclass
class DemoResult:
    parties: dict[str, str] = field(default_factory=dict)
    balances_before: dict[str, int] = field(default_factory=dict)
    balances_after: dict[str, int] = field(default_factory=dict)
    txs: list[TxRecord] = field(default_factory=list)
    proofs: list[ProofRecord] = field(default_factory=list)
    time_jumps: list[str] = field(default_factory=list)
    shipments: dict[str, dict[str, Any]] = field(default_factory=dict)
    breach_claimant: str = ""
    market: dict[str, Any] = field(default_factory=dict)
    charging: dict[str, Any] = field(default_factory=dict)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    health: dict[str, Any] = field(default_factory=dict)
    forecast: dict[str, Any] = field(default_factory=dict)
    readings_posted: int = 0

    @property
    def all_proofs_ok(self) -> bool:
        return bool(self.proofs) and all(p.ok for p in self.proofs)

    def summary(self, say: Callable[[str], None]) -> None:
        say("")
        say("=" * 78)
        say("SUMMARY")
        say("=" * 78)
        say(f"readings posted through POST /v1/readings: {self.readings_posted}")
        say(f"transactions ({len(self.txs)}):")
        for tx in self.txs:
            say(f"  {tx.label:<44} {tx.tx_hash}  gas {tx.gas_used:,}")
        ok = sum(p.ok for p in self.proofs)
        say(f"proofs verified on-chain via POST /v1/verify: {ok}/{len(self.proofs)}")
        for p in self.proofs:
            mark = "ok " if p.ok else "BAD"
            say(f"  {mark} reading {p.reading_id:<6} {p.device:<10} checks: {', '.join(p.checks)}")
        for name, s in self.shipments.items():
            say(
                f"shipment {name}: status {s['status']}, breaches reported {s['reported']}, "
                f"proven {s['proven']}, penalty {tusd(s['penalty'])}"
            )
        if self.market:
            m = self.market
            say(
                f"energy market interval {m['interval']}: price {m['price']} units/Wh, sold "
                f"{m['sold_wh']} Wh, delivered {m['delivered_wh']} Wh"
            )
            if "agent_note" in m:
                say(f"  home C's bid, placed by the AI agent from its forecast: {m['agent_note']}")
        if self.charging:
            c = self.charging
            say(
                f"charging session {c['id']}: {c['energy_wh']} Wh, paid {tusd(c['amount_due'])}, "
                f"refunded {tusd(c['deposit'] - c['amount_due'])}"
            )
        say(f"anomalies on the machine: {len(self.anomalies)}")
        for a in self.anomalies[:5]:
            say(
                f"  {a['metric']} = {a['value']:.3f} (expected {a['low']:.3f}..{a['high']:.3f}), "
                f"score {a['score']:.1f}, check {a['check']}"
            )
        for m in self.health.get("metrics", []):
            if m["remaining_hours"] is not None:
                say(
                    f"machine health: {m['metric']} {m['current']:.3f} -> limit {m['limit']} in "
                    f"~{m['remaining_hours']:.1f} h (band {_h(m['remaining_hours_low'])}.."
                    f"{_h(m['remaining_hours_high'])})"
                )
        for metric, points in self.forecast.get("metrics", {}).items():
            if points:
                values = [p["value"] for p in points]
                say(
                    f"forecast home-a {metric}: {len(points)} intervals, "
                    f"{min(values):.0f}..{max(values):.0f} Wh per 15 min"
                )
        say("token balances (before -> after, change):")
        for name, address in self.parties.items():
            before, after = self.balances_before[name], self.balances_after[name]
            say(
                f"  {name:<20} {address}  {tusd(before)} -> {tusd(after)}  "
                f"({'+' if after >= before else ''}{tusd(after - before)})"
            )
        if self.time_jumps:
            say("dev chain time was advanced (evm_increaseTime / evm_mine) for:")
            for jump in self.time_jumps:
                say(f"  {jump}")


def _h(hours: float | None) -> str:
    return "never" if hours is None else f"{hours:.1f} h"
