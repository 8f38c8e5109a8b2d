"""The ChainSense demo: a signed device fleet (two refrigerated trucks, three smart-meter homes,
an EV charger, a machine) driven through the HTTP API, with settlement on the dev chain.

Domain code: no terminal, no web framework. ``chainsense demo`` runs :func:`run_scenario`;
``chainsense serve --demo-fleet`` streams :class:`DemoFleet` readings live.
"""

from __future__ import annotations

from chainsense.demo.fleet import DEVICES, DemoFleet
from chainsense.demo.report import DemoResult, ProofRecord, TxRecord, tusd
from chainsense.demo.scenario import DemoError, run_scenario

__all__ = [
    "DEVICES",
    "DemoError",
    "DemoFleet",
    "DemoResult",
    "ProofRecord",
    "TxRecord",
    "run_scenario",
    "tusd",
]
