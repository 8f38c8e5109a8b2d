"""Pages over contract records numbered 1, 2, 3, ... with no gaps (shipments, charging sessions,
market orders), newest first. The contracts keep no public counter, so the newest id is found
with a galloping then binary search over "does id n exist" (about 2 log2(n) view calls)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Query

__all__ = ["ListCursor", "ListLimit", "newest_ids"]

ListCursor = Annotated[
    int | None, Query(ge=1, lt=2**63, description="next_cursor of the last page")
]
ListLimit = Annotated[int, Query(ge=1, le=100)]


async def _last_id(exists: Callable[[int], Awaitable[bool]]) -> int:
    if not await exists(1):
        return 0
    low, high = 1, 2
    while await exists(high):
        low, high = high, high * 2
    while high - low > 1:  # exists(low) and not exists(high)
        mid = (low + high) // 2
        if await exists(mid):
            low = mid
        else:
            high = mid
    return low


async def newest_ids(
    exists: Callable[[int], Awaitable[bool]], cursor: int | None, limit: int
) -> tuple[list[int], int | None]:
    """The ids of one page, newest first, and the cursor of the next page (None: last page).
    ``cursor`` is the last id of the previous page."""
    top = cursor - 1 if cursor is not None else await _last_id(exists)
    ids = list(range(top, max(0, top - limit), -1))
    return ids, (ids[-1] if ids and ids[-1] > 1 else None)
