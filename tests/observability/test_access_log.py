"""The app's access log (api/access.py): the same line uvicorn's access log wrote, byte for byte
but for the time, one per request, with the request id, and secrets scrubbed."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator

import pytest
import structlog
from fastapi.testclient import TestClient

from chainsense.api.fastingest import ChainSenseAPI
from chainsense.observability import logs
from chainsense.observability.logs import bind_request_id, configure_logging, info_line
from chainsense.redact import install_log_redaction

_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z")


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    direct = logs._direct
    config = structlog.get_config()
    # an in-process uvicorn started by an earlier test leaves its loggers at its --log-level
    # (uvicorn.Config sets "uvicorn.access" to WARNING for log_level="warning"): start from
    # the loggers as a fresh process has them
    uvicorn = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(u.level, u.propagate, u.disabled) for u in uvicorn]
    for u in uvicorn:
        u.setLevel(logging.NOTSET)
        u.propagate, u.disabled = True, False
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logs._direct = direct
        structlog.configure(**config)
        for u, (lvl, propagate, disabled) in zip(uvicorn, saved, strict=True):
            u.setLevel(lvl)
            u.propagate, u.disabled = propagate, disabled


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_the_line_is_the_one_logging_writes(
    fmt: str, restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "cs_" + secrets.token_hex(8)
    install_log_redaction([secret])
    configure_logging(fmt=fmt)
    token = bind_request_id("req-42")
    try:
        for path in ("/v1/readings", f"/v1/x?key={secret}"):
            args = ("127.0.0.1:5555", "POST", path, "1.1", 201)
            logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', *args)
            info_line("uvicorn.access", '%s - "%s %s HTTP/%s" %d' % args)  # noqa: UP031
    finally:
        logs.reset_request_id(token)
    lines = [_TIME.sub("<time>", line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 4
    assert lines[0] == lines[1]
    assert lines[2] == lines[3]
    assert "req-42" in lines[0]
    assert "uvicorn.access" in lines[0]
    assert secret not in lines[3]
    assert "***" in lines[3]


def test_the_app_logs_one_line_per_request_when_asked(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    app = ChainSenseAPI()

    @app.get("/x")
    async def x() -> dict[str, int]:
        return {"x": 1}

    configure_logging(fmt="json")
    with TestClient(app) as client:
        client.get("/x")
        app.access_log = True
        client.get("/x?y=2")
        client.get("/nowhere")
    lines = [line for line in capsys.readouterr().err.splitlines() if "uvicorn.access" in line]
    assert len(lines) == 2
    assert '"GET /x?y=2 HTTP/1.1\\" 200' in lines[0]
    assert '"GET /nowhere HTTP/1.1\\" 404' in lines[1]


def test_no_line_when_the_level_is_above_info(
    restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt="console", level="WARNING")
    access = logging.getLogger("uvicorn.access")
    before = access.level
    access.setLevel(logging.WARNING)  # as uvicorn sets it for --log-level warning
    try:
        info_line("uvicorn.access", "x")
    finally:
        access.setLevel(before)
    assert "uvicorn.access" not in capsys.readouterr().err
