"""`chainsense export --batches` streams into a file: a body cut off midway is an error that says
so (exit 1), not a platform that is unreachable, and leaves no file (httpx's MockTransport
stands in for the platform through the CLI's ``open_http`` seam)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from chainsense.cli import _common, app


class _CutOff(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b'{"format":"chainsense.bundle.v2"}\n'
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


def _platform(handler: httpx.MockTransport, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    @contextmanager
    def client(base_url: str, timeout: float) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=base_url, transport=handler) as http:
            yield http

    monkeypatch.setattr(_common, "open_http", client)
    return {"CHAINSENSE_API_URL": "http://platform.invalid", "CHAINSENSE_API_KEY": "k"}


def test_a_body_cut_off_midway_fails_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=_CutOff())

    env = _platform(httpx.MockTransport(answer), monkeypatch)
    out = tmp_path / "batches.jsonl"
    args = ["export", "--batches", "--since", "1000", "--out", str(out)]
    got = CliRunner().invoke(app, args, env=env)
    assert got.exit_code == 1, got.output
    assert "stopped sending after 34 bytes" in got.stderr
    assert "unreachable" not in got.stderr
    assert list(tmp_path.iterdir()) == []
    (request,) = seen
    assert (request.url.path, dict(request.url.params)) == ("/v1/export/batches", {"since": "1000"})
    assert request.headers["authorization"] == "Bearer k"


def test_a_whole_body_is_written_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b'{"format":"chainsense.bundle.v2"}\n{"batch":{}}\n{"proof":{}}\n{"proof":{}}\n'
    env = _platform(httpx.MockTransport(lambda _: httpx.Response(200, content=body)), monkeypatch)
    out = tmp_path / "batches.jsonl"
    got = CliRunner().invoke(app, ["export", "--batches", "--out", str(out)], env=env)
    assert got.exit_code == 0, got.output
    assert out.read_bytes() == body
    assert "1 batch, 2 proofs" in got.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["batches.jsonl"]
