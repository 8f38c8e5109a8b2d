// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {IReadingAnchor} from "../interfaces/IReadingAnchor.sol";

/// @title ReadingAnchor
/// @notice Keeps the Merkle roots of ChainSense reading batches, with the block time of each.
/// @dev Roles: DEFAULT_ADMIN_ROLE manages roles and pauses; ANCHORER_ROLE anchors roots.
contract ReadingAnchor is IReadingAnchor, AccessControl, Pausable {
    /// @notice Role allowed to anchor batch roots.
    bytes32 public constant ANCHORER_ROLE = keccak256("ANCHORER_ROLE");

    mapping(bytes32 root => Anchor) private _anchors;

    /// @notice Deploys the anchor; `admin` gets DEFAULT_ADMIN_ROLE, `anchorer` gets ANCHORER_ROLE.
    /// @param admin The admin account.
    /// @param anchorer The first anchorer account.
    constructor(address admin, address anchorer) {
        if (admin == address(0) || anchorer == address(0)) revert ReadingAnchorZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(ANCHORER_ROLE, anchorer);
    }

    /// @notice Pauses anchoring.
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @notice Lifts the pause.
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    /// @inheritdoc IReadingAnchor
    function anchor(bytes32 root, uint32 readingCount, bytes32 batchRef)
        external
        onlyRole(ANCHORER_ROLE)
        whenNotPaused
    {
        if (root == bytes32(0) || readingCount == 0) revert ReadingAnchorEmptyBatch();
        if (_anchors[root].blockTime != 0) revert ReadingAnchorRootAlreadyAnchored(root);
        uint64 blockTime = uint64(block.timestamp);
        _anchors[root] = Anchor({
            readingCount: readingCount,
            blockNumber: uint64(block.number),
            blockTime: blockTime
        });
        emit RootAnchored(root, batchRef, readingCount, msg.sender, blockTime);
    }

    /// @inheritdoc IReadingAnchor
    function anchorOf(bytes32 root) external view returns (Anchor memory) {
        return _anchors[root];
    }

    /// @inheritdoc IReadingAnchor
    function isAnchored(bytes32 root) public view returns (bool) {
        return _anchors[root].blockTime != 0;
    }

    /// @inheritdoc IReadingAnchor
    function leafOf(bytes32 structHash) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(structHash))));
    }

    /// @inheritdoc IReadingAnchor
    function verify(bytes32[] calldata proof, bytes32 root, bytes32 leaf) external view returns (bool) {
        return isAnchored(root) && MerkleProof.verifyCalldata(proof, root, leaf);
    }
}
