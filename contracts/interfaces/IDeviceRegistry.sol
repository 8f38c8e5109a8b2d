// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title IDeviceRegistry
/// @notice Registry of IoT devices and their signing keys. It is also the EIP-712 verifying
/// contract for ChainSense readings: domain {name: "ChainSense", version: "1", chainId,
/// verifyingContract: this registry}.
/// @dev A device identity is the address of the first key it was registered with. Rotating the key
/// gives the same identity a new signing address; readings signed by an old key while that key was
/// active stay verifiable with {verifyReadingAt}.
interface IDeviceRegistry {
    /// @notice A signed sensor reading, exactly as devices sign it (EIP-712 struct `Reading`).
    /// @param device Address of the signing key.
    /// @param seq Per-device counter; starts at 1 and strictly increases.
    /// @param timestamp Device clock, milliseconds since the Unix epoch.
    /// @param schema keccak256 of the schema name in UTF-8.
    /// @param values Fixed-point integers in the schema's order and scale.
    struct Reading {
        address device;
        uint64 seq;
        uint64 timestamp;
        bytes32 schema;
        int64[] values;
    }

    /// @notice The public record of a device identity.
    /// @param owner Who owns the device (receives payments, may be shown in dashboards).
    /// @param metadataHash Hash of off-chain metadata, for example a calibration certificate.
    /// @param currentKey The key the device signs with now.
    /// @param registeredAt Block time of registration, in seconds.
    /// @param revokedAt Block time of revocation in seconds, or 0 while the device is active.
    struct Device {
        address owner;
        bytes32 metadataHash;
        address currentKey;
        uint64 registeredAt;
        uint64 revokedAt;
    }

    /// @notice The validity window of one signing key, in block-time seconds.
    /// @param device The identity this key signs for (address(0) for an unknown key).
    /// @param activeFrom First second the key was valid.
    /// @param activeUntil First second the key was no longer valid, or 0 while it is still valid.
    struct Key {
        address device;
        uint64 activeFrom;
        uint64 activeUntil;
    }

    /// @notice Emitted when a device identity is registered.
    /// @param device The device identity (also its first key).
    /// @param owner The owner recorded for the device.
    /// @param metadataHash The metadata hash recorded for the device.
    event DeviceRegistered(address indexed device, address indexed owner, bytes32 metadataHash);

    /// @notice Emitted when a device is revoked; its current key stops being valid.
    /// @param device The device identity.
    /// @param key The key that stopped being valid.
    event DeviceRevoked(address indexed device, address indexed key);

    /// @notice Emitted when a device's signing key is replaced.
    /// @param device The device identity.
    /// @param oldKey The key that stopped being valid.
    /// @param newKey The key that is valid from now on.
    event DeviceKeyRotated(address indexed device, address indexed oldKey, address indexed newKey);

    /// @notice Emitted when a device's metadata hash changes.
    /// @param device The device identity.
    /// @param metadataHash The new metadata hash.
    event DeviceMetadataUpdated(address indexed device, bytes32 metadataHash);

    /// @notice The device identity is not registered.
    /// @param device The unknown identity.
    error DeviceRegistryUnknownDevice(address device);

    /// @notice The key has already been used by a device (keys are never reused).
    /// @param key The key.
    error DeviceRegistryKeyAlreadyUsed(address key);

    /// @notice The device has been revoked; revocation is final.
    /// @param device The device identity.
    error DeviceRegistryDeviceRevoked(address device);

    /// @notice The zero address was given where an address is required.
    error DeviceRegistryZeroAddress();

    /// @notice Registers a device identity whose first signing key is `device`.
    /// @param device The device's first key, which also names the identity.
    /// @param owner The device owner.
    /// @param metadataHash Hash of the device's off-chain metadata.
    function register(address device, address owner, bytes32 metadataHash) external;

    /// @notice Revokes a device: its current key stops being valid now. Final.
    /// @param device The device identity.
    function revoke(address device) external;

    /// @notice Replaces a device's signing key.
    /// @param device The device identity.
    /// @param newKey The new signing key; must never have been used.
    function rotateKey(address device, address newKey) external;

    /// @notice Replaces a device's metadata hash.
    /// @param device The device identity.
    /// @param metadataHash The new metadata hash.
    function updateMetadata(address device, bytes32 metadataHash) external;

    /// @notice The record of a device identity.
    /// @param device The device identity.
    /// @return The device record (all zero for an unknown device).
    function deviceOf(address device) external view returns (Device memory);

    /// @notice The validity window of a signing key.
    /// @param key The key.
    /// @return The key record (all zero for an unknown key).
    function keyOf(address key) external view returns (Key memory);

    /// @notice Whether `key` is valid for signing now.
    /// @param key The key.
    /// @return True when the key belongs to a registered, unrevoked device and was not rotated out.
    function isActiveKey(address key) external view returns (bool);

    /// @notice Whether `key` was valid at block time `at` (seconds).
    /// @param key The key.
    /// @param at A trusted time in seconds, such as the block time of a Merkle anchor.
    /// @return True when activeFrom <= at and (activeUntil == 0 or at < activeUntil).
    function wasActiveKeyAt(address key, uint64 at) external view returns (bool);

    /// @notice The EIP-712 struct hash of a reading.
    /// @param reading The reading.
    /// @return hashStruct(reading).
    function hashReading(Reading calldata reading) external pure returns (bytes32);

    /// @notice The EIP-712 digest a device signs for a reading under this registry's domain.
    /// @param reading The reading.
    /// @return keccak256("\x19\x01" || domainSeparator || hashStruct(reading)).
    function readingDigest(Reading calldata reading) external view returns (bytes32);

    /// @notice Recovers the signer of a reading; rejects malformed and high-s signatures.
    /// @param reading The reading.
    /// @param signature 65-byte (r, s, v) signature.
    /// @return The signer, or address(0) when the signature is invalid.
    function recoverReadingSigner(Reading calldata reading, bytes calldata signature)
        external
        view
        returns (address);

    /// @notice Whether an active device signed `reading`: the signature recovers `reading.device`
    /// and that key is valid now.
    /// @param reading The reading.
    /// @param signature 65-byte (r, s, v) signature.
    /// @return True when the reading is signed by an active device key.
    function verifyReading(Reading calldata reading, bytes calldata signature) external view returns (bool);

    /// @notice Whether `reading` is signed by `reading.device` and that key was valid at trusted
    /// time `at` (seconds), for example the block time of the anchor that committed the reading.
    /// @param reading The reading.
    /// @param signature 65-byte (r, s, v) signature.
    /// @param at A trusted time in seconds.
    /// @return True when the signature is valid and the key was active at `at`.
    function verifyReadingAt(Reading calldata reading, bytes calldata signature, uint64 at)
        external
        view
        returns (bool);
}
