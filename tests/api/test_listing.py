"""The newest-first pages over gap-free contract ids (shipments, sessions, orders)."""

from __future__ import annotations

import pytest

from chainsense.api.routes._listing import newest_ids


@pytest.mark.parametrize("count", [0, 1, 2, 3, 7, 8, 9, 100, 1025])
async def test_pages_walk_every_id_newest_first(count: int) -> None:
    calls = 0

    async def exists(n: int) -> bool:
        nonlocal calls
        calls += 1
        return 1 <= n <= count

    seen: list[int] = []
    cursor = None
    while True:
        ids, cursor = await newest_ids(exists, cursor, 10)
        seen += ids
        if cursor is None:
            break
    assert seen == list(range(count, 0, -1))
    assert calls <= 2 * max(1, count).bit_length() + 2  # the newest id costs O(log n) calls
