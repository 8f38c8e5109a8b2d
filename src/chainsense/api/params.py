"""Query parameters that several routes share, as ``Annotated`` aliases (one definition each)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

__all__ = ["CursorQuery", "DeviceFilter", "DeviceQuery", "LimitQuery", "SinceQuery", "UntilQuery"]

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"

DeviceQuery = Annotated[str, Query(pattern=ADDRESS_PATTERN, description="Device address")]
DeviceFilter = Annotated[str | None, Query(pattern=ADDRESS_PATTERN, description="Device address")]
SinceQuery = Annotated[
    int | None, Query(ge=0, lt=2**63, description="From this device time (ms, inclusive)")
]
UntilQuery = Annotated[
    int | None, Query(ge=0, lt=2**63, description="Before this device time (ms, exclusive)")
]
CursorQuery = Annotated[
    str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the last page")
]
LimitQuery = Annotated[int, Query(ge=1, le=1000)]
