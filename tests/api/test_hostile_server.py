"""Hostile input against a REAL server process: ``chainsense serve`` as a child process, with its
own data dir, Anvil and port, exactly as a stranger reaches it.

1. Every crash class (deep nesting, lone surrogates, invalid UTF-8, huge numbers, duplicate keys,
   wrong content types, ...) on every route that takes a body (read from the served OpenAPI
   document): after each request the process must still be alive and answering, and at the end
   nothing is stored. The deep-nesting bodies are what killed the process with SIGSEGV before
   (a dependency raises Python's recursion limit to 100,000, so the parser overflowed the C stack).
2. Schemathesis over the network against the same process: no 5xx, and answers that match the
   OpenAPI document. ``CHAINSENSE_FUZZ_EXAMPLES`` sets the examples per operation (small in
   ``make test``; ``make fuzz`` runs more).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis

from tests.api.test_fuzz import CHAIN_WRITES, CHECKS, READINGS_VALIDATE_MORE, _document
from tests.api.test_input_corpus import ADDRESS, CRASH_CLASSES
from tests.support import free_port

pytestmark = [pytest.mark.chain, pytest.mark.slow]

EXAMPLES = int(os.environ.get("CHAINSENSE_FUZZ_EXAMPLES", "3"))


class Served:
    """``chainsense serve`` on private ports and a private data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.log = data_dir.parent / "serve.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSENSE_")}
        self.env.update(
            CHAINSENSE_DATA_DIR=str(data_dir),
            CHAINSENSE_PORT=str(self.port),
            CHAINSENSE_ANVIL_PORT=str(free_port()),
            CHAINSENSE_DEMO_FLEET="false",
            # One client sends hundreds of hostile requests as fast as it can: on a quiet machine
            # that is over the default per-key limit (100/s), and each 429 would hide the answer
            # under test. The limits have their own tests (tests/e2e/test_limits.py).
            CHAINSENSE_RATE_LIMIT_KEY_RATE="100000",
            CHAINSENSE_RATE_LIMIT_KEY_BURST="100000",
            CHAINSENSE_RATE_LIMIT_ADDRESS_RATE="100000",
            CHAINSENSE_RATE_LIMIT_ADDRESS_BURST="100000",
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chainsense", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "serve died while starting:\n" + self.log_text()
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("serve did not become ready:\n" + self.log_text())
        self.admin = subprocess.run(
            [sys.executable, "-m", "chainsense", "apikey", "create", "--name", "t", "--scope",
             "admin"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.strip()  # fmt: skip

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def assert_alive(self) -> None:
        assert self.proc is not None
        assert self.proc.poll() is None, f"serve died ({self.proc.returncode}):\n{self.log_text()}"
        assert httpx.get(self.url + "/healthz", timeout=10).status_code == 200

    def stop(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("hostile") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _body_operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    """Every operation with a request body, path parameters filled with plausible values."""
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "requestBody" in operation:
                concrete = re.sub(
                    r"\{(address|participant|charger|account)\}", ADDRESS, path
                )  # fmt: skip
                found.append((method.upper(), re.sub(r"\{[a-z_]+\}", "1", concrete)))
    return found


def _stored(served: Served) -> tuple[int, int]:
    auth = {"Authorization": f"Bearer {served.admin}"}
    readings = httpx.get(served.url + "/v1/readings?limit=10", headers=auth, timeout=10).json()
    devices = httpx.get(served.url + "/v1/devices?limit=10", headers=auth, timeout=10).json()
    return len(readings["items"]), len(devices["items"])


def test_every_crash_class_on_every_body_route_leaves_the_process_alive(served: Served) -> None:
    operations = _body_operations(httpx.get(served.url + "/openapi.json", timeout=10).json())
    assert len(operations) >= 15, operations
    assert _stored(served) == (0, 0)
    auth = {"Authorization": f"Bearer {served.admin}"}
    sent = 0
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for method, path in operations:
            for name, body, headers, status, code, _ in CRASH_CLASSES:
                response = client.request(method, path, content=body, headers=headers | auth)
                sent += 1
                assert response.status_code == status, (method, path, name, response.text)
                assert response.json()["type"] == f"/problems/{code}", (method, path, name)
            served.assert_alive()
        # The same deep body with no Content-Type and without a key, to the unauthenticated
        # routes, and to a route that takes no body at all.
        for method, path in (
            ("POST", "/v1/readings"),
            ("POST", "/v1/verify"),
            ("GET", "/v1/chain"),
        ):
            for deep in (b"[" * 100_000, b'{"a":' * 100_000, b"[" * 1_000_000):
                for headers in ({}, {"Content-Type": "application/json"}):
                    response = client.request(method, path, content=deep, headers=headers)
                    sent += 1
                    assert response.status_code in (400, 413, 415), response.text
        served.assert_alive()
    assert _stored(served) == (0, 0)
    print(f"\n{sent} hostile requests to {len(operations)} body routes; the process is alive")


# --- schemathesis over the network --------------------------------------------------------------


def _config(max_examples: int) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": 9458,
            "suppress-health-check": ["too_slow", "filter_too_much"],
            "generation": {
                "deterministic": False,
                "max-examples": max_examples,
                "database": "none",
            },
            # The coverage phase (every schema boundary of every operation, ~2,700 requests
            # here) runs in `make fuzz`; `make test` keeps to a few random examples each.
            "phases": {
                "stateful": {"enabled": False},
                "coverage": {"enabled": max_examples >= 10},
            },
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "operations": [*CHAIN_WRITES, READINGS_VALIDATE_MORE],
        }
    )


over_the_network = schemathesis.openapi.from_dict(_document(), config=_config(EXAMPLES)).exclude(
    path="/v1/stream"
)
_sent = {"requests": 0}


@over_the_network.parametrize()
def test_schemathesis_against_the_real_server(case: schemathesis.Case[Any], served: Served) -> None:
    _sent["requests"] += 1
    case.call_and_validate(
        base_url=served.url, headers={"Authorization": f"Bearer {served.admin}"}, timeout=60
    )


def test_the_server_survived_schemathesis(served: Served) -> None:
    served.assert_alive()
    assert "Traceback" not in served.log.read_text(errors="replace"), served.log_text()
    print(f"\nschemathesis sent {_sent['requests']} generated requests to the real server")
