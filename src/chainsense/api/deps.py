"""FastAPI dependencies, as Annotated aliases so handlers read like plain functions."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from chainsense.chain.runtime import ChainContext
from chainsense.config import Settings

__all__ = ["ChainDep", "SettingsDep"]


def _chain(request: Request) -> ChainContext:
    chain: ChainContext = request.app.state.chain
    return chain


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ChainDep = Annotated[ChainContext, Depends(_chain)]
SettingsDep = Annotated[Settings, Depends(_settings)]
