"""The platform's commands work from anywhere the API answers: a real ``chainsense serve`` on its
own data dir and ports, and the CLI beside it with a data dir that does not exist, no database
setting and every database open failing the test. Only the chain's RPC (for transactions a
user signs) and the API's URL are shared."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from typer.testing import CliRunner
from web3 import Web3

from chainsense.chain import find_anvil
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.cli import app
from chainsense.identity import DeviceKey
from tests.e2e._serve import Serve, signed_readings
from tests.support import free_port

pytestmark = [pytest.mark.chain, pytest.mark.slow]

DEV = [Account.from_key(k).address for k in ANVIL_DEV_KEYS]


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    # anchoring on: the export of whole batches needs anchored ones (the rest send no readings)
    server = Serve(
        tmp_path_factory.mktemp("platform") / "data", anvil_port=str(free_port()), anchoring="true"
    )
    server.create_keys("cli")
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def cli(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:  # fmt: skip
    from chainsense.store import Store

    async def no_database(*args: object, **kwargs: object) -> Store:
        raise AssertionError("the CLI opened a database")

    monkeypatch.setattr(Store, "open", no_database)
    for name in ("CHAINSENSE_DATABASE_URL", "CHAINSENSE_RPC_URL", "CHAINSENSE_HOST"):
        monkeypatch.delenv(name, raising=False)
    nowhere = tmp_path / "no-data-dir"
    env = {
        "CHAINSENSE_DATA_DIR": str(nowhere),
        "CHAINSENSE_API_URL": serve.url,
        "CHAINSENSE_API_KEY": serve.keys["cli"],
        "CHAINSENSE_ANVIL_PORT": serve.settings["anvil_port"],
    }

    def run(*args: str, code: int = 0, **extra: str) -> str:
        """The command's stdout (exit 0) or stderr (any other expected exit code)."""
        result = CliRunner().invoke(app, list(args), env={**env, **extra})
        assert result.exit_code == code, result.output
        return result.stdout if code == 0 else result.stderr

    yield run
    assert not nowhere.exists()


def test_settlement_market_and_alarms_through_the_api_alone(serve: Serve, cli: Any) -> None:
    now = int(time.time() * 1000)
    out = cli(
        "shipment", "open", "--carrier", DEV[6], "--logger", DEV[9], "--min", "200", "--max",
        "800", "--start-ms", str(now - 60_000), "--end-ms", str(now + 60_000), "--payment",
        "1000", "--penalty", "10", "--max-penalty", "100", "--account", "5",
    )  # fmt: skip
    match = re.search(r"shipment (\d+) opened", out)
    assert match, out
    shipment = int(match.group(1))
    [listed] = json.loads(cli("shipment", "list", "--json"))["items"]
    assert (listed["id"], listed["shipper"], listed["status"]) == (shipment, DEV[5], "open")
    found = json.loads(cli("shipment", "compliance", str(shipment), "--json"))
    assert (found["readings"], found["evidence_root"]) == (0, None)
    nothing = cli("shipment", "report", str(shipment), code=1)
    assert "no readings of shipment" in nothing
    assert json.loads(cli("market", "agent", "status", "--json"))["mandates"] == []
    assert json.loads(cli("charging", "list", "--json")) == {"items": [], "next_cursor": None}
    assert cli("alarms", "--json") == ""


def test_unreachable_platform_and_refused_key(cli: Any) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    for args in (["alarms"], ["shipment", "list"], ["market", "agent", "status"],
                 ["shipment", "withdraw", "--account", "6"]):  # fmt: skip
        err = cli(*args, code=3, CHAINSENSE_API_URL=down)
        assert err.count("\n") == 1, err
        assert down in err
        assert "CHAINSENSE_API_URL" in err
    refused = cli("shipment", "list", code=2, CHAINSENSE_API_KEY="cs_not_a_key")
    assert "CHAINSENSE_API_KEY" in refused


def test_an_rpc_of_another_chain_is_a_usage_error(cli: Any) -> None:
    port = free_port()
    anvil = subprocess.Popen(
        [str(find_anvil()), "--port", str(port), "--chain-id", "4242", "--silent"]
    )
    try:
        rpc = f"http://127.0.0.1:{port}"
        w3 = Web3(Web3.HTTPProvider(rpc))
        deadline = time.monotonic() + 30
        while not w3.is_connected():
            assert time.monotonic() < deadline, "anvil did not start"
            time.sleep(0.05)
        err = cli("market", "--rpc", rpc, "withdraw", code=2)
        assert err.startswith("error: the platform at "), err
        assert "uses chain 31337 but the RPC" in err
        assert "is chain 4242" in err
        assert "CHAINSENSE_RPC_URL" in err
    finally:
        anvil.terminate()
        anvil.wait(10)


def test_export_batches_streams_from_a_real_server_and_verifies(
    serve: Serve, cli: Any, tmp_path: Path
) -> None:
    """An auditor's copy of every anchored batch, over the network: readings of two devices,
    anchored by the server's own anchorer, streamed by `export --batches` into a file that
    `chainsense verify` checks, pinned, against the chain."""
    domain = serve.domain()
    auth = {"Authorization": f"Bearer {serve.keys['cli']}"}
    ids: list[int] = []
    for key in (DeviceKey.generate(), DeviceKey.generate()):
        serve.register(key, serve.keys["cli"])
        body = {"readings": list(signed_readings(key, domain, 5))}
        answer = httpx.post(serve.url + "/v1/readings", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        ids += [r["id"] for r in answer.json()["results"]]
    deadline = time.monotonic() + 60
    for reading_id in ids:
        while True:
            got = httpx.get(f"{serve.url}/v1/readings/{reading_id}/proof", headers=auth, timeout=30)
            if got.status_code == 200:
                break
            assert time.monotonic() < deadline, got.text
            time.sleep(0.2)
    out = tmp_path / "batches.jsonl"
    cli("export", "--batches", "--out", str(out))
    lines = out.read_text().splitlines()
    assert lines[0] == '{"format":"chainsense.bundle.v2"}'
    batches = [json.loads(x)["batch"] for x in lines if x.startswith('{"batch":')]
    assert batches
    assert all(b["complete"] is True for b in batches)
    exported = [
        int(json.loads(x)["proof"]["reading_id"]) for x in lines if x.startswith('{"proof":')
    ]
    assert set(ids) <= set(exported)
    deployment = tmp_path / "deployment.json"
    deployment.write_text(httpx.get(serve.url + "/v1/deployment", timeout=30).text)
    rpc = f"http://127.0.0.1:{serve.settings['anvil_port']}"
    summary = json.loads(
        cli("verify", str(out), "--deployment", str(deployment), "--rpc", rpc, "--json")
    )
    assert (summary["total"], summary["valid"]) == (len(exported), len(exported)), summary
    down = f"http://127.0.0.1:{free_port()}"
    gone = tmp_path / "never.jsonl"
    err = cli("export", "--batches", "--out", str(gone), code=3, CHAINSENSE_API_URL=down)
    assert down in err
    assert not gone.exists()
    assert not (tmp_path / "never.jsonl.tmp").exists()
