"""No secret in any answer, page, log line or CLI output (issue 11).

A real ``chainsense -v serve`` runs with credentials in every URL setting (RPC: user, password,
an Infura-style ``/v3/<key>`` path and an ``?apikey=``; PostgreSQL: a password; the AI webhook:
a token in its path and query; Redis: a password) and every key setting (the role keys are the
Anvil development keys, but here they are set the way a real deployment sets secrets, so they
must never show). The test then collects everything a stranger or an operator can see:

- every GET route of the OpenAPI document, with an admin key and without one, headers included,
  the dashboard and every asset it references, the docs pages;
- the outputs of the CLI: contracts deploy / verify, chain status, apikey create / list, device
  new / register / send / list / status;
- the server's stdout and stderr (verbose);
- the failure paths: a start against an unreachable RPC carrying credentials, a start against a
  database URL with a password that does not answer, `chain status` on a dead credentialed RPC.

and looks for each secret (as given, and without ``0x`` for keys) in all of it.

Anvil serves JSON-RPC on ``/`` only; a small forwarding proxy in front of it accepts the
key-bearing path and checks that the credentials really are what ChainSense sends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from chainsense.chain.devchain import find_anvil
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from tests.support import free_port, temp_postgres_database

pytestmark = [pytest.mark.chain, pytest.mark.postgres, pytest.mark.slow]

RPC_USER, RPC_PASSWORD = "rpcuser7", "rpcPassw0rd-9f2"
RPC_PATH_KEY = "0123456789abcdef0123456789abcdef"
RPC_QUERY_KEY = "RPCKEY-5b7e1c"
DB_PASSWORD = "s3cretPW-db-71"
WEBHOOK_TOKEN = "whk-token-8e3d0a7c"
WEBHOOK_PATH_KEY = "hook0secret0path0key0123"
REDIS_PASSWORD = "redisPW-4c1f"
PASSPHRASE = "a long device passphrase 3f9"


class _Forward(BaseHTTPRequestHandler):
    """Forwards any path to Anvil's ``/``; remembers what credentials came with the requests."""

    target: ClassVar[str] = ""
    seen: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).seen.add(f"{self.path} {self.headers.get('authorization', '')}")
        answer = httpx.post(self.target, content=body, headers={"content-type": "application/json"})
        self.send_response(answer.status_code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def rpc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A credentialed RPC URL that reaches a fresh Anvil through the forwarding proxy."""
    anvil_port = free_port()
    log = tmp_path_factory.mktemp("anvil") / "anvil.log"
    with log.open("wb") as out:
        anvil = subprocess.Popen(
            [str(find_anvil(None)), "--port", str(anvil_port), "--silent"], stdout=out, stderr=out
        )
    _Forward.target = f"http://127.0.0.1:{anvil_port}/"
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                probe = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
                httpx.post(_Forward.target, json=probe, timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        port = server.server_address[1]
        yield (
            f"http://{RPC_USER}:{RPC_PASSWORD}@127.0.0.1:{port}/v3/{RPC_PATH_KEY}"
            f"?apikey={RPC_QUERY_KEY}"
        )
    finally:
        server.shutdown()
        server.server_close()
        anvil.terminate()
        anvil.wait(30)


class Collector:
    """Everything seen, by where it was seen."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def leaks(self, secrets: dict[str, str]) -> list[str]:
        found = []
        for name, secret in secrets.items():
            forms = {secret, secret.removeprefix("0x")}
            for where, text in self.texts:
                if any(form in text for form in forms):
                    at = next(text.find(f) for f in forms if f in text)
                    found.append(f"{name} in {where}: …{text[max(0, at - 80) : at + 40]!r}…")
        return found


def _base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSENSE_")}
    env.update(
        CHAINSENSE_DATA_DIR=str(data_dir),
        CHAINSENSE_DEPLOYER_KEY=ANVIL_DEV_KEYS[0],
        CHAINSENSE_OPERATOR_KEY=ANVIL_DEV_KEYS[1],
        CHAINSENSE_ANCHORER_KEY=ANVIL_DEV_KEYS[2],
        CHAINSENSE_DEVICE_PASSPHRASE=PASSPHRASE,
        CHAINSENSE_AI_WEBHOOK_URL=(
            f"http://127.0.0.1:{free_port()}/in/{WEBHOOK_PATH_KEY}?token={WEBHOOK_TOKEN}"
        ),
        CHAINSENSE_REDIS_URL=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0",
        CHAINSENSE_RPC_RETRIES="0",
        CHAINSENSE_RPC_TIMEOUT="3",
        CHAINSENSE_MARKET_AGENT="false",
    )
    return env


def _cli(seen: Collector, env: dict[str, str], *args: str, ok: bool = True) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "chainsense", "-v", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    seen.add(f"`chainsense {' '.join(args)}` stdout", done.stdout)
    seen.add(f"`chainsense {' '.join(args)}` stderr", done.stderr)
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def _serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chainsense",
                "-v",
                "serve",
                "--workers",
                "1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "serve died while starting:\n" + log.read_text()
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not become ready:\n" + log.read_text())


def _path_values(device: str) -> dict[str, str]:
    return {
        "address": device,
        "reading_id": "1",
        "batch_id": "1",
        "key": "chainsense.coldchain.v1",
        "shipment": "1",
        "interval": "1",
        "participant": device,
        "session": "1",
        "account": device,
        "device": device,
        "alarm_id": "1",
        "charger": device,
        "code": "invalid-reading",
        "key_id": "1",
        "order": "1",
    }


def _crawl(seen: Collector, url: str, admin_key: str, device: str) -> int:
    """GET every route of the OpenAPI document (with and without the key), the dashboard, its
    assets and the docs pages; return how many answers were collected."""
    count = 0
    with httpx.Client(base_url=url, timeout=30) as http:

        def get(path: str, params: dict[str, str], headers: dict[str, str], label: str) -> None:
            nonlocal count
            if path == "/v1/stream":  # server-sent events: read what comes in a second
                try:
                    with http.stream(
                        "GET", path, params=params, headers=headers, timeout=1.5
                    ) as answer:
                        text = str(answer.headers)
                        for chunk in answer.iter_text():
                            text += chunk
                except httpx.ReadTimeout:
                    pass
            else:
                answer = http.get(path, params=params, headers=headers)
                text = f"{answer.status_code} {answer.headers}\n{answer.text}"
                assert answer.status_code < 500, f"{path}: {text}"
            seen.add(f"GET {path} ({label})", text)
            count += 1

        spec = http.get("/openapi.json").json()
        values = _path_values(device)
        for path, item in spec["paths"].items():
            if "get" not in item:
                continue
            concrete = re.sub(r"\{(\w+)\}", lambda m: values[m[1]], path)
            params = {
                p["name"]: device
                for p in item["get"].get("parameters", [])
                if p["in"] == "query" and p.get("required")
            }
            get(concrete, params, {"Authorization": f"Bearer {admin_key}"}, "admin key")
            get(concrete, params, {}, "no key")
        index = http.get("/").text
        assets = set(re.findall(r'(?:src|href)="(/[^"]+)"', index))
        for path in ["/", "/docs", "/redoc", "/openapi.json", "/no-such-page", *sorted(assets)]:
            get(path, {}, {}, "page")
    return count


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with temp_postgres_database("chainsense_leak") as url:
        yield url.replace("root@", f"root:{DB_PASSWORD}@")


@pytest.mark.timeout(900)  # a dozen CLI processes: ~15 s each on a loaded 2-core machine
def test_no_secret_in_answers_pages_logs_or_cli_outputs(
    rpc: str, database: str, tmp_path: Path
) -> None:
    seen = Collector()
    env = _base_env(tmp_path / "data") | {
        "CHAINSENSE_RPC_URL": rpc,
        "CHAINSENSE_DATABASE_URL": database,
    }
    _cli(seen, env, "contracts", "deploy")
    created = Collector()  # the one place the API key is meant to be printed, once
    with ThreadPoolExecutor(3) as pool:
        key = pool.submit(_cli, created, env, "apikey", "create", "--name", "leak",
                          "--scope", "admin")  # fmt: skip
        pool.submit(_cli, seen, env, "contracts", "verify").result()
        pool.submit(_cli, seen, env, "chain", "status").result()
        admin_key = key.result()
    assert admin_key.startswith("cs_")
    seen.texts += [t for t in created.texts if t[0].endswith("stderr")]
    _cli(seen, env, "apikey", "list")
    # The credentials really are used: the path, the query and basic auth reach the endpoint.
    assert any(RPC_PATH_KEY in s and RPC_QUERY_KEY in s and "Basic" in s for s in _Forward.seen)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    proc = _serve(env, port, log)
    try:
        _wait_ready(proc, url, log)
        device_env = env | {"CHAINSENSE_API_URL": url, "CHAINSENSE_API_KEY": admin_key}
        keystore = str(tmp_path / "device.json")
        _cli(seen, device_env, "device", "new", "--keystore", keystore)
        _cli(seen, device_env, "device", "register", "--keystore", keystore)
        sent = ["--schema", "chainsense.coldchain.v1", "--value", "temperature=4.2"]
        _cli(seen, device_env, "device", "send", "--keystore", keystore, *sent,
             "--value", "humidity=60")  # fmt: skip
        listing = _cli(seen, device_env, "device", "list")
        device = re.findall(r"0x[0-9a-fA-F]{40}", listing)[0]
        answers = _crawl(seen, url, admin_key, device)
        assert answers > 50
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    seen.add("serve -v stdout+stderr", log.read_text())

    # --- failure paths --------------------------------------------------------------------
    dead_rpc = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{free_port()}", rpc)
    failing = {
        "serve, RPC unreachable": {"CHAINSENSE_RPC_URL": dead_rpc},
        "serve, database unreachable": {
            "CHAINSENSE_DATABASE_URL": database.replace(":5432/", f":{free_port()}/")
        },
    }
    started = {
        label: _serve(env | changed, free_port(), tmp_path / f"{label}.log")
        for label, changed in failing.items()
    }
    _cli(seen, env, "chain", "status", "--rpc", dead_rpc, ok=False)
    for label, failed in started.items():
        assert failed.wait(180) != 0
        text = (tmp_path / f"{label}.log").read_text()
        assert re.search("unreachable|unavailable", text), text
        seen.add(label, text)

    secrets = {
        "RPC user": RPC_USER,
        "RPC password": RPC_PASSWORD,
        "RPC path key": RPC_PATH_KEY,
        "RPC query key": RPC_QUERY_KEY,
        "database password": DB_PASSWORD,
        "webhook token": WEBHOOK_TOKEN,
        "webhook path key": WEBHOOK_PATH_KEY,
        "Redis password": REDIS_PASSWORD,
        "device passphrase": PASSPHRASE,
        "admin API key": admin_key,
        "deployer key": ANVIL_DEV_KEYS[0],
        "operator key": ANVIL_DEV_KEYS[1],
        "anchorer key": ANVIL_DEV_KEYS[2],
    }
    leaks = seen.leaks(secrets)
    assert not leaks, "\n".join(leaks)
    assert len(seen.texts) > 50
