"""Keeping secrets out of everything ChainSense prints, logs or serves.

One rule for every URL (RPC endpoints, database URLs, webhooks): :func:`redact_url` replaces the
credentials with ``***`` and keeps what an operator needs to recognise the endpoint (scheme,
host, port, the path without its key-bearing segments, the names of the query parameters).

- userinfo: ``http://user:pw@host`` -> ``http://***@host`` (``keep_user=True``, for database
  URLs whose user name is not a secret: ``postgresql://root:***@host``);
- every query value: ``?apikey=KEY&x=1`` -> ``?apikey=***&x=***``; the fragment is dropped;
- key-bearing path segments of web URLs: the segment after ``v1``/``v2``/``v3``/``key``/
  ``apikey``/``token``... (Infura ``/v3/<key>``, Alchemy ``/v2/<key>``) and any long token-like
  segment (20+ letters and digits, e.g. a QuickNode ``/<token>/``).

:func:`url_secrets` lists the secret pieces of a URL and :func:`scrub` removes given secrets from
any text (an exception message, a log line): error messages from libraries that quote the URL
go through it. :func:`install_log_redaction` does that for every log record of the process.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

__all__ = [
    "env_secrets",
    "install_log_redaction",
    "redact_url",
    "scrub",
    "scrub_logged",
    "settings_secrets",
    "url_secrets",
]

MASK = "***"

_KEY_MARKERS = frozenset(
    {"v1", "v2", "v3", "key", "keys", "apikey", "api-key", "api_key", "token", "secret", "auth"}
)
_TOKENISH = re.compile(r"[A-Za-z0-9_\-]{20,}")
_WEB_SCHEMES = frozenset({"http", "https", "ws", "wss"})


def _key_segments(scheme: str, path: str) -> list[int]:
    """Indexes of the path segments that carry a key (web URLs only; file paths are not keys)."""
    if scheme.lower() not in _WEB_SCHEMES:
        return []
    segments = path.split("/")
    found: list[int] = []
    for i, segment in enumerate(segments):
        after_marker = i > 0 and segments[i - 1].lower() in _KEY_MARKERS and segment != ""
        tokenish = bool(_TOKENISH.fullmatch(segment)) and any(c.isdigit() for c in segment)
        if after_marker or tokenish:
            found.append(i)
    return found


def redact_url(url: str | None, *, keep_user: bool = False) -> str:
    """``url`` without its credentials (see the module docstring); ``""`` for ``None``."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a malformed port)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        kept = f"{user}:{MASK}" if keep_user and has_password else MASK
        netloc = f"{kept}@{hostport}"
    segments = parts.path.split("/")
    for i in _key_segments(parts.scheme, parts.path):
        segments[i] = MASK
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    query = "&".join(f"{quote(name, safe='')}={MASK}" for name in names)
    if parts.query and not query:
        query = MASK
    path = "/".join(segments)
    if "://" not in url:
        return urlunsplit((parts.scheme, netloc, path, query, ""))
    return f"{parts.scheme}://{netloc}{path}" + (f"?{query}" if query else "")


def url_secrets(url: str | None) -> list[str]:
    """The secret pieces of ``url`` (userinfo, password, query values, key segments, the whole
    URL itself), longest first, as they may appear in text (raw and percent-decoded)."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found: set[str] = set() if redact_url(url) == url else {url}
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        found.add(userinfo)
        user, _, password = userinfo.partition(":")
        found.add(password)
        if not password:
            found.add(user)
    found.update(value for _, value in parse_qsl(parts.query, keep_blank_values=True))
    found |= {parts.query, parts.fragment}
    segments = parts.path.split("/")
    found.update(segments[i] for i in _key_segments(parts.scheme, parts.path))
    found |= {unquote(s) for s in found}
    # Short pieces ("1", "") would scrub ordinary words; 4 characters is the least we hide.
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 4 and secret in text:
            text = text.replace(secret, MASK)
    return text


def _scrub_arg(value: object, secrets: frozenset[str]) -> object:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    text = str(value)
    clean = scrub(text, secrets)
    return clean if clean != text else value


def scrub_logged(text: str) -> str:
    """``text`` scrubbed of the secrets log records are scrubbed of (install_log_redaction)."""
    secrets = _SECRETS.values
    return scrub(text, secrets) if secrets else text


class _Secrets:
    """The secrets every log record of this process is scrubbed of (see install_log_redaction)."""

    def __init__(self) -> None:
        self.values: frozenset[str] = frozenset()
        self.lock = threading.Lock()
        self.installed = False


_SECRETS = _Secrets()


def install_log_redaction(secrets: Iterable[str]) -> None:
    """Scrub ``secrets`` from every log record made from now on in this process: its message,
    its arguments and its traceback text (whatever logger, handler or formatter handles it);
    and from the traceback of an uncaught exception (``sys.excepthook``).

    Installed once as a log record factory; later calls add secrets."""
    with _SECRETS.lock:
        _SECRETS.values = _SECRETS.values | {s for s in secrets if len(s) >= 4}
        if _SECRETS.installed:
            return
        _SECRETS.installed = True
        previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        secrets = _SECRETS.values
        if not secrets:
            return record
        message = record.getMessage()
        if scrub(message, secrets) != message:
            # Scrub the parts, keeping their shape (uvicorn's access formatter unpacks args) ...
            if isinstance(record.msg, str):
                record.msg = scrub(record.msg, secrets)
            if isinstance(record.args, tuple):
                record.args = tuple(_scrub_arg(a, secrets) for a in record.args)
            elif isinstance(record.args, dict):
                record.args = {k: _scrub_arg(v, secrets) for k, v in record.args.items()}
            try:
                still = scrub(record.getMessage(), secrets) != record.getMessage()
            except (TypeError, ValueError):
                still = True
            if still:  # ... unless a secret spans them: then keep only the scrubbed text.
                record.msg, record.args = scrub(message, secrets), None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = scrub(text, secrets)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info, secrets)
        return record

    logging.setLogRecordFactory(factory)

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        # An uncaught exception's traceback goes to stderr without logging: scrub it too.
        text = "".join(traceback.format_exception(kind, exc, tb))
        sys.stderr.write(scrub(text, _SECRETS.values))

    sys.excepthook = excepthook


_SECRET_SUFFIXES = ("_KEY", "_PASSPHRASE", "_PASSWORD", "_TOKEN", "_SECRET")


def env_secrets(environ: Mapping[str, str]) -> list[str]:
    """The secrets configured in ``CHAINSENSE_*`` variables: the value of every ``*_KEY``,
    ``*_PASSPHRASE``, ``*_PASSWORD``, ``*_TOKEN`` and ``*_SECRET`` (a private key also without
    its ``0x``), and the secret pieces of every ``*_URL``."""
    found: list[str] = []
    for name, value in environ.items():
        upper = name.upper()
        if not upper.startswith("CHAINSENSE_") or not value:
            continue
        if upper.endswith(_SECRET_SUFFIXES):
            found += [value, value.removeprefix("0x")]
        elif upper.endswith("_URL"):
            found += url_secrets(value)
    return [s for s in found if len(s) >= 4]


def settings_secrets(settings: Any) -> list[str]:
    """The secrets held by a settings object (pydantic model): every ``SecretStr`` value (a
    private key also without ``0x``) and the secret pieces of every ``*_url`` field (secret
    or not)."""
    from pydantic import SecretStr

    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and name.endswith("_url"):
            # A URL is secret in its credentials, not in its host: "mqtt://127.0.0.1:1883"
            # stays readable in the logs, "mqtt://user:***@host" keeps its user.
            found += url_secrets(value.get_secret_value())
        elif isinstance(value, SecretStr):
            secret = value.get_secret_value()
            found += [secret, secret.removeprefix("0x")]
        elif name.endswith("_url") and isinstance(value, str):
            found += url_secrets(value)
    return [s for s in found if len(s) >= 4]
