"""The base of every request body model: strict, like the reading format (docs/input.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["InputModel"]


class InputModel(BaseModel):
    """A request body: a field the model does not define is refused (422 naming it), never
    silently dropped."""

    model_config = ConfigDict(extra="forbid")
