"""The market agent's order rule, without a chain: which side, how much, at what price, and why
nothing is ordered."""

from __future__ import annotations

import pytest

from chainsense.ai.forecast import SeasonalProfile
from chainsense.settlement.agent import EnergyForecast, expected_energy, plan_order
from chainsense.store import Mandate

MANDATE = Mandate(
    participant="0x" + "11" * 20, meter="0x" + "22" * 20, ask_price=120, bid_price=200,
    max_wh=5_000, sell_share=80,
)  # fmt: skip


def test_net_export_becomes_an_ask_of_the_share_at_the_ask_price() -> None:
    order = plan_order(MANDATE, 42, EnergyForecast(imported_wh=100.0, exported_wh=1_350.9), 0)
    assert (order.side, order.quantity_wh, order.price_per_wh) == ("ask", 1_000, 120)
    assert (order.interval, order.order_id, order.created_at) == (42, None, None)
    assert "offering 1000 Wh (80%" in order.note
    # an ask needs no balance; the cap still holds
    big = plan_order(MANDATE, 42, EnergyForecast(0.0, 100_000.0), 0)
    assert big.quantity_wh == 5_000


def test_net_import_becomes_a_bid_capped_by_the_free_balance() -> None:
    forecast = EnergyForecast(imported_wh=900.2, exported_wh=100.0)
    order = plan_order(MANDATE, 7, forecast, free_balance=10**9)
    assert (order.side, order.quantity_wh, order.price_per_wh) == ("bid", 801, 200)
    assert "capped" not in order.note
    poorer = plan_order(MANDATE, 7, forecast, free_balance=200 * 500 + 199)
    assert (poorer.side, poorer.quantity_wh) == ("bid", 500)
    assert "capped by the free balance" in poorer.note
    broke = plan_order(MANDATE, 7, forecast, free_balance=199)
    assert (broke.side, broke.quantity_wh) == ("none", 0)
    assert "free market balance is 199" in broke.note


@pytest.mark.parametrize(
    ("forecast", "why"),
    [
        (None, "no forecast"),
        (EnergyForecast(500.0, 500.6), "nothing to trade"),
        (EnergyForecast(0.0, 1.2), "under 1 Wh"),
    ],
)
def test_no_order(forecast: EnergyForecast | None, why: str) -> None:
    order = plan_order(MANDATE, 1, forecast, 10**9)
    assert (order.side, order.quantity_wh, order.price_per_wh) == ("none", 0, 0)
    assert why in order.note


def test_expected_energy_sums_the_overlapping_slots() -> None:
    day = 86_400_000
    profile = SeasonalProfile(interval_ms=900_000)
    for k in range(96):  # one day of 15-minute slots: slot k expects k Wh
        profile.learn_one(float(k), k * 900_000)
    # a 1-hour market interval from slot 8 (2:00) covers slots 8..11
    assert expected_energy(profile, 2 * 3_600_000, 3 * 3_600_000) == 8 + 9 + 10 + 11
    # the same time of day on another weekday falls back to the daily slot
    start = 15 * day + 2 * 3_600_000
    assert expected_energy(profile, start, start + 3_600_000) == 38
    # a 5-minute interval takes a third of its slot
    assert expected_energy(profile, 900_000 * 30, 900_000 * 30 + 300_000) == pytest.approx(10.0)
    assert expected_energy(SeasonalProfile(), 0, 900_000) is None


def test_expected_energy_counts_the_readings_of_a_fast_meter() -> None:
    """A meter that sends a reading every 10 s: a 15-minute slot holds 90 of them."""
    profile = SeasonalProfile(interval_ms=900_000)
    for k in range(8_640):  # one day
        profile.learn_one(2.0, k * 10_000)
    assert profile.period_ms == pytest.approx(10_000)
    assert expected_energy(profile, 900_000, 1_800_000) == pytest.approx(180.0)
    # an outage does not stretch the period beyond a slot, and the state keeps it
    profile.learn_one(2.0, 86_400_000 + 3_600_000)
    assert profile.period_ms < 60_000
    again = SeasonalProfile.from_state(profile.to_state())
    assert again.period_ms == profile.period_ms
