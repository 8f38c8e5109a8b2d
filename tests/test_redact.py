"""The one redaction rule for URLs, and the log record scrubbing (chainsense.redact)."""

from __future__ import annotations

import logging

import pytest

from chainsense.errors import ChainUnavailableError
from chainsense.redact import install_log_redaction, redact_url, scrub, url_secrets
from chainsense.store import mask_url

CASES = [
    ("http://user:password@host/path?apikey=KEY1234", "http://***@host/path?apikey=***"),
    ("https://mainnet.infura.io/v3/0123456789abcdef0123", "https://mainnet.infura.io/v3/***"),
    (
        "https://eth-mainnet.g.alchemy.com/v2/AbC-dEf_12345678",
        "https://eth-mainnet.g.alchemy.com/v2/***",
    ),
    (
        "https://x.quiknode.pro/0123456789abcdef0123456789abcdef01234567/",
        "https://x.quiknode.pro/***/",
    ),
    ("http://tok3nABCDEFG@host:8545", "http://***@host:8545"),
    ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
    ("https://hooks.example/in#s3cret-fragment", "https://hooks.example/in"),
    ("sqlite+aiosqlite:////tmp/a_directory_0123456789/x.db", None),  # file paths are not keys
]


@pytest.mark.parametrize(("url", "expected"), CASES)
def test_redact_url(url: str, expected: str | None) -> None:
    assert redact_url(url) == (expected or url)


def test_database_urls_keep_the_user_name() -> None:
    url = "postgresql+asyncpg://root:s3cretPW@127.0.0.1:5432/db?sslpassword=pem-pass"
    assert mask_url(url) == "postgresql+asyncpg://root:***@127.0.0.1:5432/db?sslpassword=***"


def test_secrets_of_a_url_are_scrubbed_from_text() -> None:
    url = "http://user:password@host/v3/0123456789abcdef0123?apikey=KEY1234"
    text = f"cannot reach {url} (user:password, KEY1234, 0123456789abcdef0123)"
    clean = scrub(text, url_secrets(url))
    for secret in ("password", "KEY1234", "0123456789abcdef0123"):
        assert secret not in clean


def test_chain_errors_never_hold_the_credentials() -> None:
    url = "http://user:password@host/?apikey=KEY1234"
    exc = ChainUnavailableError(url, f"InvalidURL: {url}")
    assert "password" not in str(exc)
    assert "KEY1234" not in str(exc)
    assert exc.url == "http://***@host/?apikey=***"


def test_log_records_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction(["TOPSECRET-abc"])
    log = logging.getLogger("chainsense.test_redact")
    with caplog.at_level(logging.INFO):
        log.info("plain %s and %r", "TOPSECRET-abc", ("x", "TOPSECRET-abc"))
        try:
            raise RuntimeError("boom TOPSECRET-abc")
        except RuntimeError:
            log.exception("failed")
    text = caplog.text
    assert "TOPSECRET" not in text
    assert "plain *** and" in text
    assert "boom ***" in text


def test_an_uncaught_exception_is_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    install_log_redaction(["UNCAUGHT-secret-1"])
    try:
        raise ValueError("bad URL http://u:UNCAUGHT-secret-1@host/")
    except ValueError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert "ValueError: bad URL http://u:***@host/" in err
    assert "UNCAUGHT" not in err


def test_settings_secrets_keep_a_credential_free_url_readable() -> None:
    from chainsense.config import Settings
    from chainsense.redact import settings_secrets

    plain = settings_secrets(Settings(mqtt_url="mqtt://127.0.0.1:1883"))
    assert not any("127.0.0.1" in s for s in plain)
    secret = settings_secrets(Settings(mqtt_url="mqtt://bridge:PW-of-the-bridge@broker:1883"))
    assert "PW-of-the-bridge" in secret
    text = scrub("bridging mqtt://bridge:PW-of-the-bridge@broker:1883", secret)
    assert "PW-of-the-bridge" not in text
    shown = redact_url("mqtt://bridge:PW-of-the-bridge@broker:1883", keep_user=True)
    assert scrub(f"bridging {shown}", secret) == "bridging mqtt://bridge:***@broker:1883"
