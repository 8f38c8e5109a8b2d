// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";

/// @title DeviceRegistry
/// @notice Registers IoT devices and their signing keys, and verifies signed readings (EIP-712).
/// @dev Roles: DEFAULT_ADMIN_ROLE manages roles and pauses; OPERATOR_ROLE registers, rotates,
/// updates and revokes devices. Pausing stops registration, rotation and metadata updates but
/// not revocation, so a compromised key can always be cut off.
contract DeviceRegistry is IDeviceRegistry, AccessControl, Pausable, EIP712 {
    /// @notice Role allowed to register, rotate, update and revoke devices.
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");

    /// @notice EIP-712 type hash of the Reading struct.
    bytes32 public constant READING_TYPEHASH =
        keccak256("Reading(address device,uint64 seq,uint64 timestamp,bytes32 schema,int64[] values)");

    mapping(address device => Device) private _devices;
    mapping(address key => Key) private _keys;

    /// @notice Deploys the registry; `admin` gets DEFAULT_ADMIN_ROLE, `operator` gets OPERATOR_ROLE.
    /// @param admin The admin account.
    /// @param operator The first operator account.
    constructor(address admin, address operator) EIP712("ChainSense", "1") {
        if (admin == address(0) || operator == address(0)) revert DeviceRegistryZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(OPERATOR_ROLE, operator);
    }

    /// @notice Pauses registration, rotation and metadata updates.
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @notice Lifts the pause.
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    /// @inheritdoc IDeviceRegistry
    function register(address device, address owner, bytes32 metadataHash)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
    {
        if (device == address(0) || owner == address(0)) revert DeviceRegistryZeroAddress();
        if (_keys[device].device != address(0)) revert DeviceRegistryKeyAlreadyUsed(device);
        uint64 now_ = uint64(block.timestamp);
        _devices[device] = Device({
            owner: owner,
            metadataHash: metadataHash,
            currentKey: device,
            registeredAt: now_,
            revokedAt: 0
        });
        _keys[device] = Key({device: device, activeFrom: now_, activeUntil: 0});
        emit DeviceRegistered(device, owner, metadataHash);
    }

    /// @inheritdoc IDeviceRegistry
    function revoke(address device) external onlyRole(OPERATOR_ROLE) {
        Device storage d = _activeDevice(device);
        uint64 now_ = uint64(block.timestamp);
        d.revokedAt = now_;
        address key = d.currentKey;
        _keys[key].activeUntil = now_;
        emit DeviceRevoked(device, key);
    }

    /// @inheritdoc IDeviceRegistry
    function rotateKey(address device, address newKey) external onlyRole(OPERATOR_ROLE) whenNotPaused {
        if (newKey == address(0)) revert DeviceRegistryZeroAddress();
        Device storage d = _activeDevice(device);
        if (_keys[newKey].device != address(0)) revert DeviceRegistryKeyAlreadyUsed(newKey);
        uint64 now_ = uint64(block.timestamp);
        address oldKey = d.currentKey;
        _keys[oldKey].activeUntil = now_;
        _keys[newKey] = Key({device: device, activeFrom: now_, activeUntil: 0});
        d.currentKey = newKey;
        emit DeviceKeyRotated(device, oldKey, newKey);
    }

    /// @inheritdoc IDeviceRegistry
    function updateMetadata(address device, bytes32 metadataHash)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
    {
        Device storage d = _activeDevice(device);
        d.metadataHash = metadataHash;
        emit DeviceMetadataUpdated(device, metadataHash);
    }

    /// @inheritdoc IDeviceRegistry
    function deviceOf(address device) external view returns (Device memory) {
        return _devices[device];
    }

    /// @inheritdoc IDeviceRegistry
    function keyOf(address key) external view returns (Key memory) {
        return _keys[key];
    }

    /// @inheritdoc IDeviceRegistry
    function isActiveKey(address key) public view returns (bool) {
        Key storage k = _keys[key];
        return k.device != address(0) && k.activeUntil == 0;
    }

    /// @inheritdoc IDeviceRegistry
    function wasActiveKeyAt(address key, uint64 at) public view returns (bool) {
        Key storage k = _keys[key];
        return k.device != address(0) && k.activeFrom <= at && (k.activeUntil == 0 || at < k.activeUntil);
    }

    /// @notice The EIP-712 domain separator of this registry on this chain.
    /// @return The domain separator.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @inheritdoc IDeviceRegistry
    function hashReading(Reading calldata reading) public pure returns (bytes32) {
        return keccak256(
            abi.encode(
                READING_TYPEHASH,
                reading.device,
                reading.seq,
                reading.timestamp,
                reading.schema,
                keccak256(abi.encodePacked(reading.values))
            )
        );
    }

    /// @inheritdoc IDeviceRegistry
    function readingDigest(Reading calldata reading) public view returns (bytes32) {
        return _hashTypedDataV4(hashReading(reading));
    }

    /// @inheritdoc IDeviceRegistry
    function recoverReadingSigner(Reading calldata reading, bytes calldata signature)
        public
        view
        returns (address)
    {
        // slither-disable-next-line unused-return -- 3rd value only details the failure in `err`; failures yield address(0)
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(readingDigest(reading), signature);
        return err == ECDSA.RecoverError.NoError ? signer : address(0);
    }

    /// @inheritdoc IDeviceRegistry
    function verifyReading(Reading calldata reading, bytes calldata signature) external view returns (bool) {
        return _signedByDevice(reading, signature) && isActiveKey(reading.device);
    }

    /// @inheritdoc IDeviceRegistry
    function verifyReadingAt(Reading calldata reading, bytes calldata signature, uint64 at)
        external
        view
        returns (bool)
    {
        return _signedByDevice(reading, signature) && wasActiveKeyAt(reading.device, at);
    }

    function _signedByDevice(Reading calldata reading, bytes calldata signature) private view returns (bool) {
        address signer = recoverReadingSigner(reading, signature);
        return signer != address(0) && signer == reading.device;
    }

    function _activeDevice(address device) private view returns (Device storage d) {
        d = _devices[device];
        if (d.registeredAt == 0) revert DeviceRegistryUnknownDevice(device);
        if (d.revokedAt != 0) revert DeviceRegistryDeviceRevoked(device);
    }
}
