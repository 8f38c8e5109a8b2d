"""The cold-chain oracle's compliance result, computed from the stored readings.

:func:`assess` reads the shipment's rule from the escrow (loggers, schema, value index, range,
window) and walks every stored reading of the loggers' keys in the window, counting the ones out
of range exactly as ``ColdChainEscrow.claimBreach`` judges a single reading. The evidence it cites
is the anchored root of the batch holding the first breach (or, for a compliant shipment, the
last reading in the window): anyone can fetch that reading's proof and check it on-chain.

The oracle's report does not need to be trusted: any breach it leaves out can still be proven
on-chain by anyone during the challenge period, and the penalty counts max(reported, proven).
"""

from __future__ import annotations

from dataclasses import dataclass

from chainsense.settlement.escrow import ColdChainEscrowClient, ShipmentRule
from chainsense.store import MAX_QUERY_LIMIT, Store

__all__ = ["Compliance", "assess"]


@dataclass(frozen=True)
class Compliance:
    """The oracle's view of one shipment."""

    shipment: int
    rule: ShipmentRule
    readings: int
    """Readings of the loggers' keys, in the schema, inside the window."""
    breaches: tuple[int, ...]
    """Ids of the out-of-range ones, oldest first."""
    evidence_reading: int | None
    """The reading whose batch root is cited: the first breach, else the last reading."""

    @property
    def compliant(self) -> bool:
        return not self.breaches


async def assess(store: Store, escrow: ColdChainEscrowClient, shipment: int) -> Compliance:
    """Count the shipment's breaches in the stored readings (see the module docstring)."""
    rule = await escrow.rule(shipment)
    keys = [k.address for logger in rule.loggers for k in await store.devices.keys_of(logger)]
    readings = 0
    breaches: list[int] = []
    last: int | None = None
    for key in keys:
        after: int | None = None
        while True:
            page = await store.readings.query(
                device=key, since_ms=rule.window_start_ms, until_ms=rule.window_end_ms + 1,
                after_id=after, limit=MAX_QUERY_LIMIT,
            )  # fmt: skip
            for reading in page:
                if reading.schema != rule.schema:
                    continue
                readings += 1
                last = reading.id if last is None else max(last, reading.id)
                if rule.breached_by(reading.values):
                    breaches.append(reading.id)
            if len(page) < MAX_QUERY_LIMIT:
                break
            after = page[-1].id
    breaches.sort()
    evidence = breaches[0] if breaches else last
    return Compliance(shipment, rule, readings, tuple(breaches), evidence)
