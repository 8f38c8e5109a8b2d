"""Constants and helpers shared by the identity tests (imported relatively, not via conftest)."""

from __future__ import annotations

from typing import Protocol

from chainsense.identity import DeviceKey, Reading
from chainsense.identity.eip712 import SECP256K1_N

CHAIN_ID = 31337
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER_REGISTRY = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"


class ReadingFactory(Protocol):
    def __call__(self, seed: int, count: int = 300) -> list[tuple[DeviceKey, Reading]]: ...


def high_s_twin(signature: bytes) -> bytes:
    """The other valid (r, n - s, v ^ 1) signature of the same digest and key."""
    s = int.from_bytes(signature[32:64])
    v = 55 - signature[64]  # 27 <-> 28
    return signature[:32] + (SECP256K1_N - s).to_bytes(32) + bytes((v,))


def with_v(signature: bytes, v: int) -> bytes:
    return signature[:64] + bytes((v,))
