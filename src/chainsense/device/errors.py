"""Errors of the device side.

::

    ChainSenseError
    └── DeviceError
        ├── OfflineBufferError        the offline buffer file is unusable or belongs to another key
        ├── PlatformUnreachableError  the platform could not be reached (after retries) and the
        │                             operation cannot proceed without it (no domain cached yet)
        └── PlatformResponseError     the platform answered, but not as the API says it does

Bad values given to :meth:`DeviceClient.record` raise the schema registry's own errors
(:class:`~chainsense.telemetry.schemas.UnknownSchemaError` and
:class:`~chainsense.telemetry.schemas.ValueScaleError`, which names the metric).
"""

from __future__ import annotations

from pathlib import Path

from chainsense.errors import ChainSenseError

__all__ = [
    "DeviceError",
    "OfflineBufferError",
    "PlatformResponseError",
    "PlatformUnreachableError",
]


class DeviceError(ChainSenseError):
    """Something on the device side went wrong."""


class OfflineBufferError(DeviceError):
    """The offline buffer file cannot be opened, is from a newer version, or belongs to another
    device key."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"buffer {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class PlatformUnreachableError(DeviceError):
    """The platform did not answer (connection refused, timeout, 5xx) after the retries."""

    def __init__(self, url: str, reason: str) -> None:
        from chainsense.redact import redact_url, scrub, url_secrets

        url, reason = redact_url(url), scrub(reason, url_secrets(url))
        super().__init__(f"platform at {url} is unreachable: {reason}")
        self.url = url
        self.reason = reason


class PlatformResponseError(DeviceError):
    """The platform answered with an error for the whole request, or with a body that does not
    follow the API; ``status`` is the HTTP status and ``problem`` the RFC 9457 body, if any."""

    def __init__(self, url: str, status: int, detail: str, problem: object = None) -> None:
        from chainsense.redact import redact_url

        url = redact_url(url)
        super().__init__(f"platform at {url} answered {status}: {detail}")
        self.url = url
        self.status = status
        self.detail = detail
        self.problem = problem
