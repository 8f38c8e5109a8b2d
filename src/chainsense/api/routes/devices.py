"""/v1/devices: register (sends the DeviceRegistry transaction), list, get, revoke."""

from __future__ import annotations

from typing import Annotated

from eth_utils.address import to_checksum_address
from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from chainsense.api.deps import OperatorDep, PlatformDep, ReaderDep
from chainsense.api.inputs import InputModel
from chainsense.identity import did_pkh
from chainsense.platform import Platform
from chainsense.store import DeviceRecord

router = APIRouter(prefix="/devices", tags=["devices"])

_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_ZERO32 = "0x" + "00" * 32
AddressPath = Annotated[str, Path(pattern=_ADDRESS, description="Device key address")]


class DeviceIn(InputModel):
    address: str = Field(
        pattern=_ADDRESS,
        description="The device's key address (its identity)",
        examples=["0x90F79bf6EB2c4f870365E785982E1f101E93b906"],
    )
    owner: str | None = Field(
        default=None, pattern=_ADDRESS, description="Owner address; default: the operator"
    )
    metadata_hash: str = Field(
        default=_ZERO32,
        pattern=r"^0x[0-9a-fA-F]{64}$",
        description="Hash of off-chain metadata, e.g. a calibration certificate",
    )


class DevicePublic(BaseModel):
    address: str
    identity: str = Field(description="The device identity (differs from address after rotation)")
    did: str = Field(examples=["did:pkh:eip155:31337:0x90F79bf6EB2c4f870365E785982E1f101E93b906"])
    owner: str
    metadata_hash: str
    status: str = Field(description="active, revoked or rotated")
    registered_at: str
    revoked_at: str | None
    last_seq: int = Field(description="Highest seq stored for this key (0: none yet)")
    tx_hash: str | None = Field(default=None, description="The registry transaction just sent")
    label: str | None = Field(default=None, description="The operator's name for the device")


class DevicePatch(BaseModel):
    label: str | None = Field(
        max_length=100,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="The operator's name for the device, no control characters (null: none)",
    )


class DevicePage(BaseModel):
    items: list[DevicePublic]
    next_cursor: str | None


def _public(record: DeviceRecord, chain_id: int, tx_hash: str | None = None) -> DevicePublic:
    return DevicePublic(
        address=record.address,
        identity=record.identity,
        did=did_pkh(chain_id, record.address),
        owner=record.owner,
        metadata_hash=record.metadata_hash,
        status=record.status,
        registered_at=record.registered_at.isoformat(),
        revoked_at=record.revoked_at.isoformat() if record.revoked_at else None,
        last_seq=record.last_seq,
        tx_hash=tx_hash,
        label=record.label,
    )


async def _record(platform: Platform, address: str) -> DeviceRecord:
    record = await platform.store.devices.get(to_checksum_address(address))
    if record is None:
        raise HTTPException(404, f"device {address} is not registered")
    return record


@router.post(
    "",
    status_code=201,
    response_model=DevicePublic,
    summary="Register a device (sends the DeviceRegistry transaction)",
    responses={409: {"description": "The key is already registered (decoded contract error)"}},
)
async def register_device(body: DeviceIn, platform: PlatformDep, _key: OperatorDep) -> DevicePublic:
    chain = platform.chain
    registry = chain.client.contract("DeviceRegistry", chain.deployment.address("DeviceRegistry"))
    address = to_checksum_address(body.address)
    owner = to_checksum_address(body.owner) if body.owner else chain.operator.address
    receipt = await chain.operator.transact(
        registry.functions.register(address, owner, bytes.fromhex(body.metadata_hash[2:])),
        timeout=platform.settings.tx_timeout,
        confirmations=platform.settings.confirmations,
    )
    await platform.registry.sync()
    record = await _record(platform, address)
    return _public(record, chain.deployment.chain_id, receipt["transactionHash"].to_0x_hex())


@router.get("", response_model=DevicePage, summary="List devices")
async def list_devices(
    platform: PlatformDep,
    _key: ReaderDep,
    status: Annotated[str | None, Query(pattern="^(active|revoked|rotated)$")] = None,
    cursor: Annotated[str | None, Query(pattern=_ADDRESS)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DevicePage:
    rows = await platform.store.devices.list(
        status=status, after=to_checksum_address(cursor) if cursor else None, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    chain_id = platform.chain.deployment.chain_id
    return DevicePage(
        items=[_public(r, chain_id) for r in rows],
        next_cursor=rows[-1].address if more and rows else None,
    )


@router.get(
    "/{address}",
    response_model=DevicePublic,
    summary="One device, with its DID",
    responses={404: {"description": "Not registered"}},
)
async def get_device(address: AddressPath, platform: PlatformDep, _key: ReaderDep) -> DevicePublic:
    return _public(await _record(platform, address), platform.chain.deployment.chain_id)


@router.post(
    "/{address}/revoke",
    response_model=DevicePublic,
    summary="Revoke a device: its new readings are refused; its old ones stay verifiable",
    responses={404: {"description": "Not registered"}, 409: {"description": "Already revoked"}},
)
async def revoke_device(
    address: AddressPath, platform: PlatformDep, _key: OperatorDep
) -> DevicePublic | JSONResponse:
    record = await _record(platform, address)
    chain = platform.chain
    registry = chain.client.contract("DeviceRegistry", chain.deployment.address("DeviceRegistry"))
    receipt = await chain.operator.transact(
        registry.functions.revoke(record.identity),
        timeout=platform.settings.tx_timeout,
        confirmations=platform.settings.confirmations,
    )
    await platform.registry.sync()
    updated = await _record(platform, address)
    return _public(updated, chain.deployment.chain_id, receipt["transactionHash"].to_0x_hex())


@router.patch(
    "/{device}",
    response_model=DevicePublic,
    summary="Label a device (kept by the platform, not on-chain)",
    responses={404: {"description": "Not registered"}, 422: {"description": "Invalid label"}},
)
async def patch_device(
    device: Annotated[str, Path(pattern=_ADDRESS, description="Device key address")],
    body: DevicePatch,
    platform: PlatformDep,
    _key: OperatorDep,
) -> DevicePublic:
    device = to_checksum_address(device)  # any letter case, as the other device routes take
    try:
        found = await platform.store.devices.set_label(device, body.label)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if not found:
        raise HTTPException(404, f"device {device} is not registered")
    return _public(await _record(platform, device), platform.chain.deployment.chain_id)
