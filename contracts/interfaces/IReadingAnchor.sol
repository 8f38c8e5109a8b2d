// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title IReadingAnchor
/// @notice Anchors Merkle roots of reading batches and verifies readings against them.
/// @dev Trees use the OpenZeppelin StandardMerkleTree layout. A reading's leaf is the
/// StandardMerkleTree leaf of the single value `bytes32 hashStruct(reading)`:
/// keccak256(bytes.concat(keccak256(abi.encode(structHash)))).
interface IReadingAnchor {
    /// @notice What the chain knows about an anchored root. It fits one storage slot; the
    /// operator's batch reference is only in the {RootAnchored} event, which keeps an anchor
    /// near 52k gas instead of 74k.
    /// @param readingCount How many readings the batch holds.
    /// @param blockNumber Block in which the root was anchored.
    /// @param blockTime Block time in seconds at which the root was anchored (0 = not anchored).
    struct Anchor {
        uint32 readingCount;
        uint64 blockNumber;
        uint64 blockTime;
    }

    /// @notice Emitted when a batch root is anchored.
    /// @param root The Merkle root.
    /// @param batchRef The operator's batch reference.
    /// @param readingCount How many readings the batch holds.
    /// @param anchorer The account that anchored it.
    /// @param blockTime Block time of the anchor, in seconds.
    event RootAnchored(
        bytes32 indexed root, bytes32 indexed batchRef, uint32 readingCount, address indexed anchorer, uint64 blockTime
    );

    /// @notice The root is already anchored; anchoring is idempotent by root.
    /// @param root The root.
    error ReadingAnchorRootAlreadyAnchored(bytes32 root);

    /// @notice A batch must hold at least one reading, and its root must not be zero.
    error ReadingAnchorEmptyBatch();

    /// @notice The zero address was given where an address is required.
    error ReadingAnchorZeroAddress();

    /// @notice Anchors a batch root.
    /// @param root The Merkle root of the batch.
    /// @param readingCount How many readings the batch holds.
    /// @param batchRef The operator's reference for the batch (emitted, not stored).
    function anchor(bytes32 root, uint32 readingCount, bytes32 batchRef) external;

    /// @notice The anchor record of a root.
    /// @param root The root.
    /// @return The record; blockTime is 0 when the root is not anchored.
    function anchorOf(bytes32 root) external view returns (Anchor memory);

    /// @notice Whether `root` is anchored.
    /// @param root The root.
    /// @return True when anchored.
    function isAnchored(bytes32 root) external view returns (bool);

    /// @notice The StandardMerkleTree leaf of a reading's EIP-712 struct hash.
    /// @param structHash hashStruct(reading).
    /// @return keccak256(bytes.concat(keccak256(abi.encode(structHash)))).
    function leafOf(bytes32 structHash) external pure returns (bytes32);

    /// @notice Whether `leaf` is in the anchored tree with root `root`.
    /// @param proof The Merkle path (sorted-pair hashing, OpenZeppelin MerkleProof).
    /// @param root The anchored root.
    /// @param leaf The leaf.
    /// @return True when `root` is anchored and the proof leads from `leaf` to it.
    function verify(bytes32[] calldata proof, bytes32 root, bytes32 leaf) external view returns (bool);
}
