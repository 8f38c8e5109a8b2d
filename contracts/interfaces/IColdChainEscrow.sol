// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IDeviceRegistry} from "./IDeviceRegistry.sol";

/// @title IColdChainEscrow
/// @notice Escrow for a refrigerated shipment: the shipper deposits the payment, the carrier is
/// paid at the end minus a penalty for every proven breach of the temperature range.
/// @dev Penalty rule: breaches = max(breaches the oracle reported, distinct out-of-range readings
/// proven on-chain); penalty = min(maxPenalty, breaches * penaltyPerBreach); the carrier gets
/// payment - penalty and the shipper gets the penalty back. Anyone can prove a breach until the
/// challenge window closes, so the oracle can only add breaches, never hide one.
interface IColdChainEscrow {
    /// @notice Where a shipment is in its life.
    enum Status {
        None,
        Open,
        Delivered,
        Settled
    }

    /// @notice What a shipper chooses when opening a shipment.
    /// @param carrier Who carries the goods and is paid.
    /// @param loggers Device identities (DeviceRegistry) whose readings count; 1 to 8.
    /// @param schema keccak256 of the readings' schema name (e.g. "chainsense.coldchain.v1").
    /// @param valueIndex Which entry of `values` is the temperature (0 for coldchain.v1).
    /// @param minValue Lowest allowed value, in the schema's fixed-point scale (e.g. 200 = 2.00 C).
    /// @param maxValue Highest allowed value, same scale.
    /// @param windowStart First reading time that counts, ms since the Unix epoch (device clock).
    /// @param windowEnd Last reading time that counts, ms since the Unix epoch.
    /// @param payment Token units the shipper deposits.
    /// @param penaltyPerBreach Token units deducted per breach.
    /// @param maxPenalty Cap of the total penalty; at most `payment`.
    struct Terms {
        address carrier;
        address[] loggers;
        bytes32 schema;
        uint8 valueIndex;
        int64 minValue;
        int64 maxValue;
        uint64 windowStart;
        uint64 windowEnd;
        uint256 payment;
        uint256 penaltyPerBreach;
        uint256 maxPenalty;
    }

    /// @notice The state of a shipment.
    /// @param shipper Who opened it and deposited the payment.
    /// @param carrier Who is paid.
    /// @param status Open, Delivered (oracle reported) or Settled.
    /// @param valueIndex Index of the temperature in the reading values.
    /// @param reportedBreaches Breaches the oracle reported at delivery.
    /// @param provenBreaches Distinct out-of-range readings proven on-chain.
    /// @param minValue Lowest allowed value.
    /// @param maxValue Highest allowed value.
    /// @param windowStart Window start, ms since the epoch.
    /// @param windowEnd Window end, ms since the epoch.
    /// @param claimDeadline Block time (s) from which breaches can no longer be proven and the
    /// shipment can be settled.
    /// @param schema keccak256 of the schema name.
    /// @param evidenceRoot The Merkle root the oracle cited (0 until reported).
    /// @param payment Deposited token units.
    /// @param penaltyPerBreach Token units per breach.
    /// @param maxPenalty Penalty cap.
    struct Shipment {
        address shipper;
        address carrier;
        Status status;
        uint8 valueIndex;
        uint32 reportedBreaches;
        uint32 provenBreaches;
        int64 minValue;
        int64 maxValue;
        uint64 windowStart;
        uint64 windowEnd;
        uint64 claimDeadline;
        bytes32 schema;
        bytes32 evidenceRoot;
        uint256 payment;
        uint256 penaltyPerBreach;
        uint256 maxPenalty;
    }

    /// @notice Emitted when a shipment is opened and its payment deposited.
    /// @param id The shipment id.
    /// @param shipper The shipper.
    /// @param carrier The carrier.
    /// @param payment Deposited token units.
    event ShipmentOpened(uint256 indexed id, address indexed shipper, address indexed carrier, uint256 payment);

    /// @notice Emitted when the oracle reports delivery.
    /// @param id The shipment id.
    /// @param compliant Whether the oracle found every reading in range.
    /// @param breaches Breaches the oracle counted.
    /// @param evidenceRoot The anchored root holding the oracle's evidence.
    /// @param claimDeadline End of the challenge window (block time, s).
    event DeliveryReported(
        uint256 indexed id, bool compliant, uint32 breaches, bytes32 evidenceRoot, uint64 claimDeadline
    );

    /// @notice Emitted when someone proves an out-of-range reading.
    /// @param id The shipment id.
    /// @param logger The logger identity that signed the reading.
    /// @param structHash hashStruct of the reading (claimable once).
    /// @param value The out-of-range value.
    /// @param root The anchored root the proof led to.
    /// @param claimant Who proved it.
    event BreachProven(
        uint256 indexed id, address indexed logger, bytes32 structHash, int64 value, bytes32 root, address claimant
    );

    /// @notice Emitted when a shipment settles.
    /// @param id The shipment id.
    /// @param breaches Breaches counted (max of reported and proven).
    /// @param carrierAmount Token units credited to the carrier.
    /// @param shipperAmount Token units credited back to the shipper.
    event ShipmentSettled(uint256 indexed id, uint32 breaches, uint256 carrierAmount, uint256 shipperAmount);

    /// @notice Emitted when an account withdraws what it is owed.
    /// @param account The account.
    /// @param amount Token units sent.
    event Withdrawn(address indexed account, uint256 amount);

    /// @notice The zero address was given where an address is required.
    error ColdChainEscrowZeroAddress();
    /// @notice The terms are inconsistent (empty payment, bad range or window, too many loggers, ...).
    /// @param reason What is wrong.
    error ColdChainEscrowInvalidTerms(string reason);
    /// @notice No shipment has this id.
    /// @param id The id.
    error ColdChainEscrowUnknownShipment(uint256 id);
    /// @notice The shipment is not in the status this action needs.
    /// @param id The id.
    /// @param status Its current status.
    error ColdChainEscrowWrongStatus(uint256 id, Status status);
    /// @notice The oracle reported before the window ended or after the report deadline.
    /// @param id The id.
    error ColdChainEscrowReportOutOfTime(uint256 id);
    /// @notice The challenge window is closed: no more breaches can be proven.
    /// @param id The id.
    error ColdChainEscrowChallengeClosed(uint256 id);
    /// @notice The challenge window is still open: the shipment cannot settle yet.
    /// @param id The id.
    /// @param claimDeadline When it closes.
    error ColdChainEscrowChallengeOpen(uint256 id, uint64 claimDeadline);
    /// @notice The reading was not signed by one of the shipment's loggers.
    /// @param id The id.
    /// @param key The signing key of the reading.
    error ColdChainEscrowNotALogger(uint256 id, address key);
    /// @notice The reading has another schema, or too few values.
    /// @param id The id.
    /// @param schema The reading's schema.
    error ColdChainEscrowWrongSchema(uint256 id, bytes32 schema);
    /// @notice The reading was taken outside the shipment's window.
    /// @param id The id.
    /// @param timestamp The reading time, ms.
    error ColdChainEscrowOutsideWindow(uint256 id, uint64 timestamp);
    /// @notice The reading's value is inside the allowed range: not a breach.
    /// @param id The id.
    /// @param value The value.
    error ColdChainEscrowValueInRange(uint256 id, int64 value);
    /// @notice The Merkle root is not anchored in the ReadingAnchor.
    /// @param root The root.
    error ColdChainEscrowRootNotAnchored(bytes32 root);
    /// @notice The Merkle proof does not lead from the reading to the root.
    error ColdChainEscrowInvalidProof();
    /// @notice The signature is not the device's, or its key was not valid at anchoring time.
    /// @param key The reading's signing key.
    error ColdChainEscrowInvalidSignature(address key);
    /// @notice This reading was already claimed for this shipment.
    /// @param id The id.
    /// @param structHash hashStruct of the reading.
    error ColdChainEscrowAlreadyClaimed(uint256 id, bytes32 structHash);
    /// @notice The caller is owed nothing.
    error ColdChainEscrowNothingToWithdraw();

    /// @notice Opens a shipment and pulls `terms.payment` from the caller (approve first).
    /// @param terms The shipment terms.
    /// @return id The new shipment id (from 1).
    function openShipment(Terms calldata terms) external returns (uint256 id);

    /// @notice Oracle: reports delivery with its compliance result and evidence root; opens the
    /// challenge window. Allowed from the end of the window until the report deadline.
    /// @param id The shipment id.
    /// @param compliant Whether the oracle found every reading in range.
    /// @param breaches How many out-of-range readings the oracle counted.
    /// @param evidenceRoot The anchored root holding those readings.
    function reportDelivery(uint256 id, bool compliant, uint32 breaches, bytes32 evidenceRoot) external;

    /// @notice Anyone: proves that a logger of the shipment signed an out-of-range reading inside
    /// the window, committed in an anchored root. Each reading counts once.
    /// @param id The shipment id.
    /// @param reading The reading.
    /// @param signature The logger's EIP-712 signature.
    /// @param root An anchored root holding the reading.
    /// @param proof The Merkle path from the reading's leaf to `root`.
    function claimBreach(
        uint256 id,
        IDeviceRegistry.Reading calldata reading,
        bytes calldata signature,
        bytes32 root,
        bytes32[] calldata proof
    ) external;

    /// @notice Anyone: after the challenge window, splits the payment by the penalty rule.
    /// @param id The shipment id.
    function settle(uint256 id) external;

    /// @notice Sends the caller everything it is owed (pull payment).
    function withdraw() external;

    /// @notice A shipment.
    /// @param id The id.
    /// @return The shipment (status None for an unknown id).
    function shipmentOf(uint256 id) external view returns (Shipment memory);

    /// @notice The logger identities of a shipment.
    /// @param id The id.
    /// @return The loggers.
    function loggersOf(uint256 id) external view returns (address[] memory);

    /// @notice Whether a reading was already claimed as a breach of a shipment.
    /// @param id The id.
    /// @param structHash hashStruct of the reading.
    /// @return True when claimed.
    function isClaimed(uint256 id, bytes32 structHash) external view returns (bool);

    /// @notice The penalty the shipment would pay if it settled now.
    /// @param id The id.
    /// @return breaches Breaches counted.
    /// @return penalty Token units.
    function penaltyOf(uint256 id) external view returns (uint32 breaches, uint256 penalty);

    /// @notice What an account can withdraw.
    /// @param account The account.
    /// @return Token units.
    function owed(address account) external view returns (uint256);
}
