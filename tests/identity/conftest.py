"""Fixtures of the identity tests: a pool of device keys, a verifier, seeded random readings."""

from __future__ import annotations

import random

import pytest

from chainsense.identity import DeviceKey, Reading, ReadingVerifier, keccak256
from chainsense.identity.eip712 import INT64_MAX, INT64_MIN, UINT64_MAX

from ._support import CHAIN_ID, REGISTRY, ReadingFactory

# Values that sit on encoding edges: int64 limits, sign changes, 2^53, word boundaries.
_EDGE_VALUES = (
    0, 1, -1, INT64_MIN, INT64_MAX, INT64_MIN + 1, INT64_MAX - 1,
    2**53, -(2**53), 2**31, -(2**31), 255, -256, 4150, -620,
)  # fmt: skip
_EDGE_U64 = (0, 1, 2**32, 2**53, 2**63, UINT64_MAX - 1, UINT64_MAX)


@pytest.fixture(scope="session")
def device_keys() -> list[DeviceKey]:
    rng = random.Random(712)
    return [DeviceKey(rng.randbytes(32)) for _ in range(8)]


@pytest.fixture(scope="session")
def verifier() -> ReadingVerifier:
    return ReadingVerifier(CHAIN_ID, REGISTRY)


def _random_u64(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.25:
        return rng.choice(_EDGE_U64)
    if roll < 0.5:
        return rng.randrange(1, 2**20)
    return rng.randrange(0, UINT64_MAX + 1)


def _random_values(rng: random.Random) -> tuple[int, ...]:
    values = []
    for _ in range(rng.choice((0, 0, 1, 2, 3, 3, 5, 17))):
        roll = rng.random()
        if roll < 0.3:
            values.append(rng.choice(_EDGE_VALUES))
        elif roll < 0.6:
            values.append(rng.randrange(-100_000, 100_000))
        else:
            values.append(rng.randrange(INT64_MIN, INT64_MAX + 1))
    return tuple(values)


@pytest.fixture(scope="session")
def make_readings(device_keys: list[DeviceKey]) -> ReadingFactory:
    """``make_readings(seed, count=300)``: seeded random readings, plus the extreme corners."""

    def factory(seed: int, count: int = 300) -> list[tuple[DeviceKey, Reading]]:
        rng = random.Random(seed)
        out: list[tuple[DeviceKey, Reading]] = []
        for i in range(count):
            key = rng.choice(device_keys)
            schema = (
                keccak256(f"schema-{rng.randrange(1000)}".encode()) if i % 2 else rng.randbytes(32)
            )
            reading = Reading(
                device=key.address,
                seq=_random_u64(rng),
                timestamp=_random_u64(rng),
                schema=schema,
                values=_random_values(rng),
            )
            out.append((key, reading))
        key = device_keys[0]
        for seq, timestamp, values in (
            (0, 0, ()),
            (UINT64_MAX, UINT64_MAX, (INT64_MIN, INT64_MAX)),
            (1, 1_763_700_000_000, (4150, 620)),
        ):
            out.append((key, Reading(key.address, seq, timestamp, bytes(32), values)))
        return out

    return factory


@pytest.fixture
def sample(device_keys: list[DeviceKey]) -> tuple[DeviceKey, Reading]:
    key = device_keys[1]
    reading = key.reading(
        seq=7, timestamp=1_763_700_000_000, schema=keccak256(b"coldchain.v1"), values=(4150, 620)
    )
    return key, reading
