"""Verification of real proof documents (signed by registered dev keys, anchored on Anvil), and
tampering with every field of them: verification fails, naming the check that failed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from chainsense.identity.eip712 import SECP256K1_N
from chainsense.provenance import ProofDocument
from chainsense.provenance.verify import (
    OFFLINE_CHECKS,
    ONCHAIN_CHECKS,
    Verdict,
    verify_offline,
    verify_onchain,
)
from tests.provenance.support import METER, Chain, device_keys
from tests.support import free_port

pytestmark = pytest.mark.chain

Raw = dict[str, Any]


def flip(hex_value: str, byte: int = 0) -> str:
    raw = bytearray.fromhex(hex_value[2:])
    raw[byte] ^= 0x01
    return "0x" + raw.hex()


def tampered(doc: ProofDocument, change: Callable[[Raw], object]) -> ProofDocument:
    raw = copy.deepcopy(doc.to_json())
    change(raw)
    return ProofDocument.from_json(raw)


def assert_all_ok(verdict: Verdict) -> None:
    assert verdict.ok, verdict.to_json()
    assert verdict.failed == ()


# --- untouched documents ------------------------------------------------------------------------


async def test_everyProofOfTheBatch_verifiesOfflineAndOnChain(
    chain: Chain, proofs: list[ProofDocument]
) -> None:
    assert len({d.reading.schema for d in proofs}) == 2
    for doc in proofs:
        offline = verify_offline(doc)
        assert [c.name for c in offline.checks] == list(OFFLINE_CHECKS)
        assert_all_ok(offline)
        assert not offline.onchain
        full = await verify_onchain(doc, chain.client)
        assert [c.name for c in full.checks] == [*OFFLINE_CHECKS, *ONCHAIN_CHECKS]
        assert_all_ok(full)
        assert full.onchain


async def test_aJsonRoundTrip_verifiesToo_andAnRpcUrlWorksLikeAClient(
    chain: Chain, proofs: list[ProofDocument]
) -> None:
    doc = ProofDocument.from_json(proofs[-1].to_json())
    assert doc == proofs[-1]
    assert_all_ok(await verify_onchain(doc, chain.rpc_url))


def test_aDocumentWithoutSchema_verifies_theSchemaIsNotInterpreted(
    proofs: list[ProofDocument],
) -> None:
    verdict = verify_offline(tampered(proofs[0], lambda raw: raw.update(schema=None)))
    assert_all_ok(verdict)
    assert "no schema" in verdict["schema"].detail


# --- tampering ----------------------------------------------------------------------------------

OTHER_DEVICE = device_keys()[1].address


def _set(path: str, value: Any) -> Callable[[Raw], None]:
    def change(raw: Raw) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for key in parents:
            node = node[key]
        node[last] = value(node[last]) if callable(value) else value

    return change


def _high_s(signature: str) -> str:
    raw = bytes.fromhex(signature[2:])
    s = SECP256K1_N - int.from_bytes(raw[32:64])
    return "0x" + (raw[:32] + s.to_bytes(32) + bytes([55 - raw[64]])).hex()


def _value(i: int, delta: int = 1) -> Callable[[Raw], None]:
    def change(raw: Raw) -> None:
        raw["reading"]["values"][i] += delta

    return change


def _flip_step(index: int, byte: int) -> Callable[[Raw], None]:
    def change(raw: Raw) -> None:
        raw["proof"][index] = flip(raw["proof"][index], byte)

    return change


def _path(change: Callable[[list[str]], object]) -> Callable[[Raw], None]:
    return lambda raw: change(raw["proof"])


SIGNED = {"signature", "leaf"}  # what changing a signed field of the reading breaks offline
#: (id, change, failed offline, failed on-chain in addition)
READING_CASES: list[tuple[str, Callable[[Raw], object], set[str], set[str]]] = [
    ("reading.device", _set("reading.device", OTHER_DEVICE), SIGNED, {"device"}),
    ("reading.seq", _set("reading.seq", lambda v: v + 1), SIGNED, {"device"}),
    ("reading.timestamp", _set("reading.timestamp", lambda v: v - 1), SIGNED, {"device"}),
    ("reading.schema", _set("reading.schema", METER.id_hex), SIGNED | {"schema"}, {"device"}),
    ("reading.values[0]", _value(0), SIGNED, {"device"}),
    ("reading.values[1]", _value(1, -1), SIGNED, {"device"}),
    ("reading.values+", _set("reading.values", lambda v: [*v, 0]), SIGNED | {"schema"}, {"device"}),
    ("reading.values-", _set("reading.values", lambda v: v[:-1]), SIGNED | {"schema"}, {"device"}),
    ("reading.signature.r", _set("reading.signature", flip), {"signature"}, {"device"}),
    (
        "reading.signature.s",
        _set("reading.signature", lambda s: flip(s, 40)),
        {"signature"},
        {"device"},
    ),
    (
        "reading.signature.v",
        _set("reading.signature", lambda s: flip(s, 64)),
        {"signature"},
        {"device"},
    ),
    ("reading.signature.high-s", _set("reading.signature", _high_s), {"signature"}, {"device"}),
]
PROOF_CASES: list[tuple[str, Callable[[Raw], object], set[str], set[str]]] = [
    ("structHash", _set("structHash", flip), {"leaf"}, set()),
    ("leaf", _set("leaf", lambda v: flip(v, 31)), {"leaf", "merkle-path"}, set()),
    ("root", _set("root", flip), {"merkle-path"}, {"anchor", "transaction"}),
    ("proof.drop", _path(lambda p: p.pop()), {"merkle-path"}, set()),
    ("proof.add", _path(lambda p: p.append(p[0])), {"merkle-path"}, set()),
    ("proof.swap", _path(lambda p: p.reverse()), {"merkle-path"}, set()),
]
ANCHOR_CASES: list[tuple[str, Callable[[Raw], object], set[str], set[str]]] = [
    ("anchor.chainId", _set("anchor.chainId", 1), {"domain"}, {"chain"}),
    ("anchor.txHash", _set("anchor.txHash", flip), set(), {"transaction"}),
    (
        "anchor.blockNumber+",
        _set("anchor.blockNumber", lambda n: n + 1),
        set(),
        {"anchor", "transaction"},
    ),
    (
        "anchor.blockNumber-",
        _set("anchor.blockNumber", lambda n: n - 1),
        set(),
        {"anchor", "transaction"},
    ),
    (
        "anchor.blockTime",
        _set("anchor.blockTime", lambda t: t + 1),
        set(),
        {"anchor", "transaction", "block"},
    ),
]
DOMAIN_CASES: list[tuple[str, Callable[[Raw], object], set[str], set[str]]] = [
    ("domain.chainId", _set("domain.chainId", 1), {"domain", "signature"}, {"chain"}),
    ("domain.name", _set("domain.name", "ChainSense2"), {"domain"}, set()),
    ("domain.version", _set("domain.version", "2"), {"domain"}, set()),
    ("schema.name", _set("schema.name", METER.name), {"schema"}, set()),
    ("schema.id", _set("schema.id", METER.id_hex), {"schema"}, set()),
    ("schema.metrics", _set("schema.metrics", lambda m: m[:1]), {"schema"}, set()),
]
CASES = READING_CASES + PROOF_CASES + ANCHOR_CASES + DOMAIN_CASES


@pytest.mark.parametrize(
    ("change", "offline", "onchain"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_tampering_failsNamingTheCheck(
    chain: Chain,
    proofs: list[ProofDocument],
    change: Callable[[Raw], object],
    offline: set[str],
    onchain: set[str],
) -> None:
    doc = tampered(proofs[0], change)
    assert doc != proofs[0]
    verdict = verify_offline(doc)
    assert set(verdict.failed) == offline, verdict.to_json()
    assert verdict.ok is (not offline)
    full = await verify_onchain(doc, chain.client)
    assert set(full.failed) == offline | onchain, full.to_json()
    assert not full.ok
    for name in full.failed:
        assert full[name].detail


async def test_tamperingAnyPathElement_failsTheMerklePath(
    chain: Chain, proofs: list[ProofDocument]
) -> None:
    # 12 leaves: the paths have 3 or 4 steps; every element of every proof, first and last byte
    assert {len(d.proof) for d in proofs} == {3, 4}
    for doc in proofs:
        for index in range(len(doc.proof)):
            for byte in (0, 31):
                bad = tampered(doc, _flip_step(index, byte))
                assert verify_offline(bad).failed == ("merkle-path",)
    bad = tampered(proofs[0], _flip_step(len(proofs[0].proof) - 1, 31))
    assert (await verify_onchain(bad, chain.client)).failed == ("merkle-path",)


async def test_anchorContractElsewhere_failsAnchorAndTransaction(
    chain: Chain, proofs: list[ProofDocument]
) -> None:
    for where in (chain.registry, "0x" + "12" * 20):  # a contract of another kind; no contract
        doc = tampered(proofs[0], _set("anchor.contract", where))
        assert verify_offline(doc).ok
        verdict = await verify_onchain(doc, chain.client)
        assert set(verdict.failed) == {"anchor", "transaction"}, verdict.to_json()


async def test_registryElsewhere_failsSignatureAndDevice(
    chain: Chain, proofs: list[ProofDocument]
) -> None:
    for where in (chain.anchor, "0x" + "12" * 20):
        doc = tampered(proofs[0], _set("domain.verifyingContract", where))
        verdict = await verify_onchain(doc, chain.client)
        assert set(verdict.failed) == {"signature", "device"}, verdict.to_json()


async def test_anotherChain_skipsTheRestOfTheOnChainChecks(
    chain: Chain, proofs: list[ProofDocument]
) -> None:
    verdict = await verify_onchain(tampered(proofs[0], _set("anchor.chainId", 5)), chain.client)
    assert "serves chain 31337, not anchor.chainId 5" in verdict["chain"].detail
    for name in ONCHAIN_CHECKS[1:]:
        assert verdict[name].skipped
        assert not verdict[name].ok


# --- the chain's side ---------------------------------------------------------------------------


async def test_unreachableRpc_isAFailedChainCheck_notAnError(proofs: list[ProofDocument]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    verdict = await verify_onchain(proofs[0], url, timeout=2.0)
    assert verdict.failed == ("chain",)
    assert url in verdict["chain"].detail
    assert [c.name for c in verdict.checks if c.skipped] == list(ONCHAIN_CHECKS[1:])
    assert not verdict.ok


async def test_revokedDevice_oldReadingStillVerifiesAtAnchorTime(snapshot: Chain) -> None:
    chain = snapshot
    key = device_keys()[4]
    await chain.register(key)
    await chain.advance()
    (doc,) = await chain.anchor_batch([chain.sign(key, 1)], label="revoked-later")
    await chain.advance()
    await chain.revoke(key)
    registry = chain.client.contract("DeviceRegistry", chain.registry)
    _, _, active_until = await chain.client.call(registry.functions.keyOf(key.address))
    assert active_until > doc.anchor.block_time  # revoked, after the anchor
    verdict = await verify_onchain(doc, chain.client)
    assert_all_ok(verdict)
    assert doc.proof == ()  # a one-leaf tree: the root is the leaf
    assert doc.root == doc.leaf


async def test_keyRegisteredOnlyAfterTheAnchor_failsTheDeviceCheck(snapshot: Chain) -> None:
    chain = snapshot
    key = device_keys()[4]
    (doc,) = await chain.anchor_batch([chain.sign(key, 1)], label="registered-later")
    unregistered = await verify_onchain(doc, chain.client)
    assert unregistered.failed == ("device",)
    assert "not a key registered" in unregistered["device"].detail
    await chain.advance()
    await chain.register(key)
    late = await verify_onchain(doc, chain.client)
    assert late.failed == ("device",)
    assert "after the anchor time" in late["device"].detail
    assert verify_offline(doc).ok  # the signature itself is fine


async def test_anchorDroppedByAReorg_failsAnchorAndTransaction(
    snapshot: Chain, proofs: list[ProofDocument]
) -> None:
    chain = snapshot
    before = await chain.rpc("evm_snapshot")
    items = [chain.sign(device_keys()[0], 10), chain.sign(device_keys()[1], 10)]
    docs = await chain.anchor_batch(items, label="reorged")
    assert_all_ok(await verify_onchain(docs[0], chain.client))
    assert await chain.rpc("evm_revert", before) is True
    for _ in range(3):
        await chain.rpc("evm_mine")
    verdict = await verify_onchain(docs[0], chain.client)
    assert set(verdict.failed) == {"anchor", "transaction"}, verdict.to_json()
    assert verdict["block"].skipped


async def test_verdictJson_namesEveryCheck(chain: Chain, proofs: list[ProofDocument]) -> None:
    doc = tampered(proofs[1], _set("root", flip))
    body = (await verify_onchain(doc, chain.client)).to_json()
    assert body["ok"] is False
    assert body["onchain"] is True
    assert body["failed"] == ["merkle-path", "anchor", "transaction"]
    assert [c["name"] for c in body["checks"]] == [*OFFLINE_CHECKS, *ONCHAIN_CHECKS]
    assert all(set(c) == {"name", "ok", "skipped", "detail"} for c in body["checks"])
