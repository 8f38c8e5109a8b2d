"""The test helpers themselves: a revert assertion that cannot fail is worse than none."""

from __future__ import annotations

import pytest
from eth_utils.crypto import keccak
from web3.contract import Contract

from tests.contracts.helpers import (
    Roles,
    assert_reverts,
    decode_revert,
    error_selector,
    make_account,
)

pytestmark = [pytest.mark.chain, pytest.mark.usefixtures("isolated")]

DEVICE = make_account("helpers-device")


def test_errorSelector_isKeccakOfSignature(registry: Contract) -> None:
    by_name = {e["name"]: e for e in registry.abi if e["type"] == "error"}
    assert (
        error_selector(dict(by_name["DeviceRegistryUnknownDevice"]))
        == keccak(text="DeviceRegistryUnknownDevice(address)")[:4]
    )
    assert error_selector(dict(by_name["AccessControlUnauthorizedAccount"])) == bytes.fromhex(
        "e2517d3f"
    )


def test_decodeRevert_rejectsUnknownSelector(registry: Contract) -> None:
    with pytest.raises(AssertionError, match="matches no custom error"):
        decode_revert(registry.abi, bytes.fromhex("deadbeef"))


def test_assertReverts_failsOnWrongErrorWrongArgsOrSuccess(
    registry: Contract, roles: Roles
) -> None:
    call = registry.functions.revoke(DEVICE.address)
    assert_reverts(
        call, "DeviceRegistryUnknownDevice", DEVICE.address, sender=roles.operator.address
    )
    with pytest.raises(AssertionError):
        assert_reverts(
            call, "DeviceRegistryDeviceRevoked", DEVICE.address, sender=roles.operator.address
        )
    with pytest.raises(AssertionError):
        assert_reverts(
            call, "DeviceRegistryUnknownDevice", roles.owner.address, sender=roles.operator.address
        )
    with pytest.raises(AssertionError):
        assert_reverts(call, "DeviceRegistryUnknownDevice", sender=roles.operator.address)
    register = registry.functions.register(DEVICE.address, roles.owner.address, bytes(32))
    with pytest.raises(AssertionError, match="did not revert"):
        assert_reverts(register, "EnforcedPause", sender=roles.operator.address)
