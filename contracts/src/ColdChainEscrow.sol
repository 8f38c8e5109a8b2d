// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IColdChainEscrow} from "../interfaces/IColdChainEscrow.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {IReadingAnchor} from "../interfaces/IReadingAnchor.sol";
import {AnchoredReadings} from "./AnchoredReadings.sol";

/// @title ColdChainEscrow
/// @notice Cold-chain shipment escrow settled from anchored, signed logger readings. The operator
/// cannot hide a breach: anyone holding an out-of-range reading (with its signature and Merkle
/// proof against an anchored root) can prove it here during the challenge window.
/// @dev Roles: DEFAULT_ADMIN_ROLE manages roles and pauses; ORACLE_ROLE reports delivery.
/// Timeline of a shipment: open -> (window ends) -> oracle reports within `reportTimeout` ->
/// challenge window of `challengePeriod` -> settle -> carrier and shipper withdraw. If the oracle
/// never reports, the challenge window ends `reportTimeout + challengePeriod` after the window
/// end and the shipment settles on proven breaches alone. Pausing stops opening, reporting and
/// settling, never claims or withdrawals: a pause can neither hide a breach nor trap funds.
contract ColdChainEscrow is IColdChainEscrow, AccessControl, Pausable, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice Role allowed to report deliveries.
    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");
    /// @notice Most loggers one shipment may name.
    uint256 public constant MAX_LOGGERS = 8;

    /// @notice The payment token.
    IERC20 public immutable token;
    /// @notice The DeviceRegistry that verifies reading signatures.
    IDeviceRegistry public immutable registry;
    /// @notice The ReadingAnchor holding the batch roots.
    IReadingAnchor public immutable anchors;
    /// @notice Seconds, after the delivery report, during which breaches can be proven.
    uint64 public immutable challengePeriod;
    /// @notice Seconds, after the window end, within which the oracle must report.
    uint64 public immutable reportTimeout;

    uint256 private _nextId = 1;
    mapping(uint256 id => Shipment) private _shipments;
    mapping(uint256 id => address[]) private _loggers;
    mapping(uint256 id => mapping(address logger => bool)) private _isLogger;
    mapping(uint256 id => mapping(bytes32 structHash => bool)) private _claimed;
    mapping(address account => uint256) private _owed;

    /// @notice Deploys the escrow.
    /// @param admin Gets DEFAULT_ADMIN_ROLE.
    /// @param oracle Gets ORACLE_ROLE (the platform's operator key).
    /// @param token_ The ERC-20 payments are made in.
    /// @param registry_ The DeviceRegistry.
    /// @param anchors_ The ReadingAnchor.
    /// @param challengePeriod_ Challenge window after the delivery report, seconds (> 0).
    /// @param reportTimeout_ Time the oracle has to report after the window end, seconds (> 0).
    constructor(
        address admin,
        address oracle,
        IERC20 token_,
        IDeviceRegistry registry_,
        IReadingAnchor anchors_,
        uint64 challengePeriod_,
        uint64 reportTimeout_
    ) {
        if (
            admin == address(0) || oracle == address(0) || address(token_) == address(0)
                || address(registry_) == address(0) || address(anchors_) == address(0)
        ) revert ColdChainEscrowZeroAddress();
        if (challengePeriod_ == 0 || reportTimeout_ == 0) revert ColdChainEscrowInvalidTerms("zero period");
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(ORACLE_ROLE, oracle);
        token = token_;
        registry = registry_;
        anchors = anchors_;
        challengePeriod = challengePeriod_;
        reportTimeout = reportTimeout_;
    }

    /// @notice Pauses opening, reporting and settling (not claims, not withdrawals).
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @notice Lifts the pause.
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    /// @inheritdoc IColdChainEscrow
    function openShipment(Terms calldata terms) external nonReentrant whenNotPaused returns (uint256 id) {
        _checkTerms(terms);
        id = _nextId++;
        Shipment storage s = _shipments[id];
        s.shipper = msg.sender;
        s.carrier = terms.carrier;
        s.status = Status.Open;
        s.valueIndex = terms.valueIndex;
        s.minValue = terms.minValue;
        s.maxValue = terms.maxValue;
        s.windowStart = terms.windowStart;
        s.windowEnd = terms.windowEnd;
        s.claimDeadline = terms.windowEnd / 1000 + reportTimeout + challengePeriod;
        s.schema = terms.schema;
        s.payment = terms.payment;
        s.penaltyPerBreach = terms.penaltyPerBreach;
        s.maxPenalty = terms.maxPenalty;
        for (uint256 i = 0; i < terms.loggers.length; ++i) {
            address logger = terms.loggers[i];
            if (logger == address(0)) revert ColdChainEscrowZeroAddress();
            if (_isLogger[id][logger]) revert ColdChainEscrowInvalidTerms("duplicate logger");
            _isLogger[id][logger] = true;
            _loggers[id].push(logger);
        }
        emit ShipmentOpened(id, msg.sender, terms.carrier, terms.payment);
        token.safeTransferFrom(msg.sender, address(this), terms.payment);
    }

    /// @inheritdoc IColdChainEscrow
    function reportDelivery(uint256 id, bool compliant, uint32 breaches, bytes32 evidenceRoot)
        external
        onlyRole(ORACLE_ROLE)
        whenNotPaused
    {
        Shipment storage s = _shipment(id);
        if (s.status != Status.Open) revert ColdChainEscrowWrongStatus(id, s.status);
        uint64 windowEndSeconds = s.windowEnd / 1000;
        // slither-disable-next-line timestamp -- block time decides the reporting period by design; minutes-scale periods dwarf validator drift
        if (block.timestamp < windowEndSeconds || block.timestamp >= windowEndSeconds + reportTimeout) {
            revert ColdChainEscrowReportOutOfTime(id);
        }
        if (compliant != (breaches == 0)) revert ColdChainEscrowInvalidTerms("compliant iff no breach");
        uint64 deadline = uint64(block.timestamp) + challengePeriod;
        s.status = Status.Delivered;
        s.reportedBreaches = breaches;
        s.evidenceRoot = evidenceRoot;
        s.claimDeadline = deadline;
        emit DeliveryReported(id, compliant, breaches, evidenceRoot, deadline);
    }

    /// @inheritdoc IColdChainEscrow
    function claimBreach(
        uint256 id,
        IDeviceRegistry.Reading calldata reading,
        bytes calldata signature,
        bytes32 root,
        bytes32[] calldata proof
    ) external {
        Shipment storage s = _shipment(id);
        if (s.status == Status.Settled) revert ColdChainEscrowWrongStatus(id, s.status);
        // slither-disable-next-line timestamp -- the challenge deadline is a block time by design
        if (block.timestamp >= s.claimDeadline) revert ColdChainEscrowChallengeClosed(id);
        if (reading.schema != s.schema || reading.values.length <= s.valueIndex) {
            revert ColdChainEscrowWrongSchema(id, reading.schema);
        }
        if (reading.timestamp < s.windowStart || reading.timestamp > s.windowEnd) {
            revert ColdChainEscrowOutsideWindow(id, reading.timestamp);
        }
        int64 value = reading.values[s.valueIndex];
        if (value >= s.minValue && value <= s.maxValue) revert ColdChainEscrowValueInRange(id, value);
        address logger = AnchoredReadings.identityOf(registry, reading.device);
        if (logger == address(0) || !_isLogger[id][logger]) revert ColdChainEscrowNotALogger(id, reading.device);
        (AnchoredReadings.Verdict verdict, bytes32 structHash) =
            AnchoredReadings.check(registry, anchors, reading, signature, root, proof);
        if (verdict == AnchoredReadings.Verdict.RootNotAnchored) revert ColdChainEscrowRootNotAnchored(root);
        if (verdict == AnchoredReadings.Verdict.InvalidProof) revert ColdChainEscrowInvalidProof();
        if (verdict == AnchoredReadings.Verdict.InvalidSignature) {
            revert ColdChainEscrowInvalidSignature(reading.device);
        }
        if (_claimed[id][structHash]) revert ColdChainEscrowAlreadyClaimed(id, structHash);
        _claimed[id][structHash] = true;
        s.provenBreaches += 1;
        emit BreachProven(id, logger, structHash, value, root, msg.sender);
    }

    /// @inheritdoc IColdChainEscrow
    function settle(uint256 id) external whenNotPaused {
        Shipment storage s = _shipment(id);
        if (s.status == Status.Settled) revert ColdChainEscrowWrongStatus(id, s.status);
        // slither-disable-next-line timestamp -- the challenge deadline is a block time by design
        if (block.timestamp < s.claimDeadline) revert ColdChainEscrowChallengeOpen(id, s.claimDeadline);
        (uint32 breaches, uint256 penalty) = _penalty(s);
        uint256 carrierAmount = s.payment - penalty;
        s.status = Status.Settled;
        _owed[s.carrier] += carrierAmount;
        _owed[s.shipper] += penalty;
        emit ShipmentSettled(id, breaches, carrierAmount, penalty);
    }

    /// @inheritdoc IColdChainEscrow
    function withdraw() external nonReentrant {
        uint256 amount = _owed[msg.sender];
        if (amount == 0) revert ColdChainEscrowNothingToWithdraw();
        _owed[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IColdChainEscrow
    function shipmentOf(uint256 id) external view returns (Shipment memory) {
        return _shipments[id];
    }

    /// @inheritdoc IColdChainEscrow
    function loggersOf(uint256 id) external view returns (address[] memory) {
        return _loggers[id];
    }

    /// @inheritdoc IColdChainEscrow
    function isClaimed(uint256 id, bytes32 structHash) external view returns (bool) {
        return _claimed[id][structHash];
    }

    /// @inheritdoc IColdChainEscrow
    function penaltyOf(uint256 id) external view returns (uint32 breaches, uint256 penalty) {
        return _penalty(_shipment(id));
    }

    /// @inheritdoc IColdChainEscrow
    function owed(address account) external view returns (uint256) {
        return _owed[account];
    }

    function _penalty(Shipment storage s) private view returns (uint32 breaches, uint256 penalty) {
        breaches = s.reportedBreaches > s.provenBreaches ? s.reportedBreaches : s.provenBreaches;
        penalty = uint256(breaches) * s.penaltyPerBreach;
        if (penalty > s.maxPenalty) penalty = s.maxPenalty;
    }

    function _shipment(uint256 id) private view returns (Shipment storage s) {
        s = _shipments[id];
        if (s.status == Status.None) revert ColdChainEscrowUnknownShipment(id);
    }

    function _checkTerms(Terms calldata terms) private pure {
        if (terms.carrier == address(0)) revert ColdChainEscrowZeroAddress();
        if (terms.payment == 0) revert ColdChainEscrowInvalidTerms("zero payment");
        if (terms.maxPenalty > terms.payment) revert ColdChainEscrowInvalidTerms("penalty cap above payment");
        if (terms.minValue > terms.maxValue) revert ColdChainEscrowInvalidTerms("empty range");
        if (terms.windowStart >= terms.windowEnd) revert ColdChainEscrowInvalidTerms("empty window");
        if (terms.loggers.length == 0 || terms.loggers.length > MAX_LOGGERS) {
            revert ColdChainEscrowInvalidTerms("1 to 8 loggers");
        }
    }
}
