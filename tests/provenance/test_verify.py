"""Verification of real proof documents (signed by registered dev keys, anchored on Anvil)
against the chain: the pinned deployment, the forged-deployment attack, the block hash,
revocation, late registration, reorgs. The offline tampering matrix is in the shared conformance
vectors (test_vectors.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from chainsense.chain import Signer, deploy_core
from chainsense.chain.deploy import published_deployment
from chainsense.chain.devkeys import ANVIL_DEV_KEYS
from chainsense.provenance import ProofDocument
from chainsense.provenance.pins import Pins
from chainsense.provenance.verify import OFFLINE_CHECKS, Verdict, verify_offline
from chainsense.provenance.verify_rpc import verify_onchain
from tests.provenance.support import Chain, device_keys
from tests.support import free_port

pytestmark = pytest.mark.chain

Raw = dict[str, Any]
ONLINE = [*OFFLINE_CHECKS, "code", "device"]


def tampered(doc: ProofDocument, change: Callable[[Raw], object]) -> ProofDocument:
    raw = copy.deepcopy(doc.to_json())
    change(raw)
    return ProofDocument.from_json(raw)


def assert_valid(verdict: Verdict) -> None:
    assert verdict.status == "valid", verdict.to_json()
    assert verdict.failed == ()


async def published_pins(chain: Chain) -> Pins:
    deployment = await _deployment(chain)
    return Pins.from_document(await published_deployment(chain.client, deployment))


async def _deployment(chain: Chain) -> Any:
    from chainsense.chain.deploy import DeployedContract, Deployment

    def entry(address: str) -> DeployedContract:
        return DeployedContract(address=address, tx_hash="0x", block_number=0, artifact_sha256="")

    return Deployment(
        chain_id=chain.chain_id,
        deployer="",
        roles={},
        contracts={"DeviceRegistry": entry(chain.registry), "ReadingAnchor": entry(chain.anchor)},
    )


async def test_everyProofOfTheBatch_verifiesOnChain_andOfflineFromItsBlockHash(
    chain: Chain, proofs: list[ProofDocument]
) -> None:
    pins = await published_pins(chain)
    assert pins.registry_code_hash is not None
    for doc in proofs:
        full = await verify_onchain(doc, chain.client, pins=pins)
        assert [c.name for c in full.checks] == ONLINE
        assert_valid(full)
        block = await chain.rpc("eth_getBlockByNumber", hex(doc.anchor.block_number), False)
        trusted = {bytes.fromhex(block["hash"][2:])}
        offline = verify_offline(doc, pins=pins, trusted_blocks=trusted)
        assert [c.name for c in offline.checks] == list(OFFLINE_CHECKS)
        assert_valid(offline)
        assert "confirmation" in full["block"].detail


async def test_withoutPins_nothingIsClaimed(chain: Chain, proofs: list[ProofDocument]) -> None:
    verdict = await verify_onchain(proofs[0], chain.rpc_url)
    assert verdict.status == "incomplete"
    assert verdict.failed == ()
    assert set(verdict.unchecked) == {"contracts", "code"}
    assert not verdict.ok


async def test_forgedDeployment_failsContracts_andTheDevice(snapshot: Chain) -> None:
    """The attack from the issue, for real: copies of both contracts deployed from the published
    bytecode, a key registered there, a made-up reading anchored there."""
    chain = snapshot
    pins = await published_pins(chain)
    attacker = Signer(chain.client, ANVIL_DEV_KEYS[4])
    forged = await deploy_core(
        chain.client, attacker, admin=attacker.address, operator=attacker.address,
        anchorer=attacker.address,
    )  # fmt: skip
    fake = Chain(
        rpc_url=chain.rpc_url, client=chain.client, operator=attacker, anchorer=attacker,
        registry=forged.address("DeviceRegistry"), anchor=forged.address("ReadingAnchor"),
        chain_id=forged.chain_id,
    )  # fmt: skip
    key = device_keys()[4]
    await fake.register(key)
    await fake.advance()
    (doc,) = await fake.anchor_batch([fake.sign(key, 1, (-5000, 990))], label="made-up")
    # internally perfect, and valid against the forged contracts themselves
    assert_valid(await verify_onchain(doc, chain.client, pins=fake.pins))
    verdict = await verify_onchain(doc, chain.client, pins=pins)
    assert set(verdict.failed) == {"contracts", "device"}, verdict.to_json()
    assert "not the pinned ReadingAnchor" in verdict["contracts"].detail
    assert verdict["code"].ok  # the pinned contracts are the real ones


async def test_codeAtAPinnedAddress_mustHaveThePinnedHash(
    chain: Chain, proofs: list[ProofDocument]
) -> None:
    pins = await published_pins(chain)
    wrong = Pins(
        pins.chain_id, pins.registry, pins.anchor, pins.anchor_code_hash, pins.anchor_code_hash
    )
    verdict = await verify_onchain(proofs[0], chain.client, pins=wrong)
    assert verdict.failed == ("code",)


async def test_unreachableRpc_failsTheBlockCheck_notAnError(
    chain: Chain, proofs: list[ProofDocument]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    verdict = await verify_onchain(proofs[0], url, pins=chain.pins, timeout=2.0)
    assert verdict.failed == ("block",)
    assert url in verdict["block"].detail
    assert verdict.unchecked == ("code", "device")


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
    assert_valid(await verify_onchain(doc, chain.client, pins=chain.pins))
    assert doc.proof == ()  # a one-leaf tree: the root is the leaf
    assert doc.root == doc.leaf


async def test_keyRegisteredOnlyAfterTheAnchor_failsTheDeviceCheck(snapshot: Chain) -> None:
    chain = snapshot
    key = device_keys()[4]
    (doc,) = await chain.anchor_batch([chain.sign(key, 1)], label="registered-later")
    unregistered = await verify_onchain(doc, chain.client, pins=chain.pins)
    assert unregistered.failed == ("device",)
    assert "not a key registered" in unregistered["device"].detail
    await chain.advance()
    await chain.register(key)
    late = await verify_onchain(doc, chain.client, pins=chain.pins)
    assert late.failed == ("device",)
    assert "after the anchor time" in late["device"].detail


async def test_anchorDroppedByAReorg_failsTheBlockCheck(
    snapshot: Chain, proofs: list[ProofDocument]
) -> None:
    chain = snapshot
    before = await chain.rpc("evm_snapshot")
    items = [chain.sign(device_keys()[0], 10), chain.sign(device_keys()[1], 10)]
    docs = await chain.anchor_batch(items, label="reorged")
    assert_valid(await verify_onchain(docs[0], chain.client, pins=chain.pins))
    assert await chain.rpc("evm_revert", before) is True
    for _ in range(3):
        await chain.rpc("evm_mine")
    verdict = await verify_onchain(docs[0], chain.client, pins=chain.pins)
    assert verdict.failed == ("block",), verdict.to_json()
    assert "not block_hash" in verdict["block"].detail


async def test_verdictJson_namesEveryCheck(chain: Chain, proofs: list[ProofDocument]) -> None:
    raw = proofs[1].to_json()
    doc = tampered(proofs[1], lambda r: r.update(root=raw["leaf"]))
    body = (await verify_onchain(doc, chain.client, pins=chain.pins)).to_json()
    assert body["ok"] is False
    assert body["status"] == "invalid"
    assert body["failed"] == ["merkle-path", "receipt"]
    assert [c["name"] for c in body["checks"]] == ONLINE
    assert all(set(c) == {"name", "ok", "skipped", "detail"} for c in body["checks"])
