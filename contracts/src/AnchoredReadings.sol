// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {IReadingAnchor} from "../interfaces/IReadingAnchor.sol";

/// @title AnchoredReadings
/// @notice The one on-chain definition of "this signed reading was anchored", shared by the
/// settlement contracts (ColdChainEscrow, EnergyMarket, ChargingPayments).
/// @dev A reading is proven when (1) `root` is anchored in the ReadingAnchor, (2) `proof` leads
/// from the reading's StandardMerkleTree leaf, keccak256(bytes.concat(keccak256(abi.encode(
/// hashStruct(reading))))), to `root` (OpenZeppelin MerkleProof, sorted pairs), and (3) the
/// DeviceRegistry says `reading.device` signed it with a key that was valid at the anchor's
/// block time (`verifyReadingAt`), so a key revoked or rotated later does not void old evidence.
/// The library returns a verdict instead of reverting, so each contract reverts with its own
/// errors (custom errors are named after the contract that raises them).
library AnchoredReadings {
    /// @notice The outcome of {check}.
    enum Verdict {
        Valid,
        RootNotAnchored,
        InvalidProof,
        InvalidSignature
    }

    /// @notice Checks that `reading` is signed by its device and committed in an anchored root.
    /// @param registry The DeviceRegistry (EIP-712 verifying contract of readings).
    /// @param anchors The ReadingAnchor holding the roots.
    /// @param reading The reading.
    /// @param signature The device's 65-byte EIP-712 signature of the reading.
    /// @param root The anchored Merkle root the proof leads to.
    /// @param proof The Merkle path from the reading's leaf to `root`.
    /// @return verdict Valid, or the first check that failed.
    /// @return structHash hashStruct(reading): a unique key of the reading (for once-only claims).
    function check(
        IDeviceRegistry registry,
        IReadingAnchor anchors,
        IDeviceRegistry.Reading calldata reading,
        bytes calldata signature,
        bytes32 root,
        bytes32[] calldata proof
    ) internal view returns (Verdict verdict, bytes32 structHash) {
        uint64 anchoredAt = anchors.anchorOf(root).blockTime;
        if (anchoredAt == 0) return (Verdict.RootNotAnchored, bytes32(0));
        structHash = registry.hashReading(reading);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(structHash))));
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) return (Verdict.InvalidProof, structHash);
        if (!registry.verifyReadingAt(reading, signature, anchoredAt)) {
            return (Verdict.InvalidSignature, structHash);
        }
        return (Verdict.Valid, structHash);
    }

    /// @notice The device identity a signing key belongs to (keys rotate, identities stay).
    /// @param registry The DeviceRegistry.
    /// @param key The signing key (`reading.device`).
    /// @return The identity, or address(0) for an unknown key.
    function identityOf(IDeviceRegistry registry, address key) internal view returns (address) {
        return registry.keyOf(key).device;
    }
}
