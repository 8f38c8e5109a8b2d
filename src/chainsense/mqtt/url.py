"""Broker URLs: ``mqtt://user:password@host:port`` (``mqtts://`` for TLS), parsed once.

The password is kept out of ``repr`` and ``str``: logs and messages show :attr:`BrokerUrl.redacted`.

>>> url = BrokerUrl.parse("mqtt://platform:s3cret@127.0.0.1:1884")
>>> url.host, url.port, url.username, url.redacted
('127.0.0.1', 1884, 'platform', 'mqtt://platform:***@127.0.0.1:1884')
>>> "s3cret" in repr(url)
False
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from chainsense.errors import ConfigError

__all__ = ["BrokerUrl"]

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    @classmethod
    def parse(cls, text: str) -> BrokerUrl:
        """Parse ``mqtt[s]://[user[:password]@]host[:port]``; :class:`ConfigError` names what is
        wrong (never the password)."""
        try:
            parts = urlsplit(text.strip())
            port = parts.port
        except ValueError:
            raise ConfigError(
                "CHAINSENSE_MQTT_URL: not a URL (mqtt://user:pass@host:port)"
            ) from None
        if parts.scheme not in _DEFAULT_PORTS:
            raise ConfigError(
                f"CHAINSENSE_MQTT_URL: scheme must be mqtt or mqtts, got {parts.scheme!r}"
            )
        if not parts.hostname:
            raise ConfigError("CHAINSENSE_MQTT_URL: no host (mqtt://user:pass@host:port)")
        return cls(
            host=parts.hostname,
            port=port or _DEFAULT_PORTS[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=parts.scheme == "mqtts",
        )

    @property
    def redacted(self) -> str:
        """The URL with the password replaced by ``***``."""
        user = ""
        if self.username is not None:
            user = self.username + (":***" if self.password is not None else "") + "@"
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.redacted
