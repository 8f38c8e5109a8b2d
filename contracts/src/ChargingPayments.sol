// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IChargingPayments} from "../interfaces/IChargingPayments.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {IReadingAnchor} from "../interfaces/IReadingAnchor.sol";
import {AnchoredReadings} from "./AnchoredReadings.sol";

/// @title ChargingPayments
/// @notice Pay-per-use charging settled from the charger's signed, anchored meter reading.
/// @dev Roles: DEFAULT_ADMIN_ROLE manages roles and pauses. Stations need no role: the
/// DeviceRegistry says who owns a charger. Pausing stops pricing, opening and closing, never
/// refunds after the timeout or withdrawals, so a pause cannot trap a deposit.
contract ChargingPayments is IChargingPayments, AccessControl, Pausable, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice The schema id of charger readings, chainsense.charger.v1 version 1, value
    /// [energy_delivered Wh scale 0]: keccak256(abi.encode(name, uint32 version,
    /// (string name, string unit, int8 scale)[] metrics)) (docs/proof-format.md).
    bytes32 public constant CHARGER_SCHEMA = 0x077edc88e5016eb433cc6e19379ebfa9d7717c37f575cd63d0fb24687a8fe281;

    /// @notice The payment token.
    IERC20 public immutable token;
    /// @notice The DeviceRegistry (charger ownership and reading signatures).
    IDeviceRegistry public immutable registry;
    /// @notice The ReadingAnchor holding the batch roots.
    IReadingAnchor public immutable anchors;
    /// @notice Seconds after opening within which the station must close a session.
    uint64 public immutable sessionTimeout;

    uint256 private _nextId = 1;
    mapping(uint256 id => Session) private _sessions;
    mapping(address charger => uint256) private _prices;
    mapping(address charger => uint256 id) private _active;
    mapping(address account => uint256) private _owed;

    /// @notice Deploys the payments contract.
    /// @param admin Gets DEFAULT_ADMIN_ROLE.
    /// @param token_ The ERC-20 payments are made in.
    /// @param registry_ The DeviceRegistry.
    /// @param anchors_ The ReadingAnchor.
    /// @param sessionTimeout_ Seconds a station has to close a session (> 0).
    constructor(
        address admin,
        IERC20 token_,
        IDeviceRegistry registry_,
        IReadingAnchor anchors_,
        uint64 sessionTimeout_
    ) {
        if (
            admin == address(0) || address(token_) == address(0) || address(registry_) == address(0)
                || address(anchors_) == address(0) || sessionTimeout_ == 0
        ) revert ChargingPaymentsZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        token = token_;
        registry = registry_;
        anchors = anchors_;
        sessionTimeout = sessionTimeout_;
    }

    /// @notice Pauses pricing, opening and closing (not refunds, not withdrawals).
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @notice Lifts the pause.
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    /// @inheritdoc IChargingPayments
    function setPrice(address charger, uint256 pricePerWh) external whenNotPaused {
        if (registry.deviceOf(charger).owner != msg.sender) revert ChargingPaymentsNotStation(charger, msg.sender);
        _prices[charger] = pricePerWh;
        emit PriceSet(charger, msg.sender, pricePerWh);
    }

    /// @inheritdoc IChargingPayments
    function openSession(address charger, uint256 deposit) external nonReentrant whenNotPaused returns (uint256 id) {
        uint256 price = _prices[charger];
        if (price == 0) revert ChargingPaymentsNoPrice(charger);
        if (deposit == 0) revert ChargingPaymentsZeroDeposit();
        uint256 busy = _active[charger];
        if (busy != 0) revert ChargingPaymentsChargerBusy(charger, busy);
        address station = registry.deviceOf(charger).owner;
        id = _nextId++;
        _sessions[id] = Session({
            vehicle: msg.sender,
            charger: charger,
            station: station,
            status: Status.Open,
            openedAt: uint64(block.timestamp),
            energyWh: 0,
            pricePerWh: price,
            deposit: deposit,
            amountDue: 0
        });
        _active[charger] = id;
        emit SessionOpened(id, msg.sender, charger, deposit, price);
        token.safeTransferFrom(msg.sender, address(this), deposit);
    }

    /// @inheritdoc IChargingPayments
    function closeSession(
        uint256 id,
        IDeviceRegistry.Reading calldata reading,
        bytes calldata signature,
        bytes32 root,
        bytes32[] calldata proof
    ) external whenNotPaused {
        Session storage s = _openSession(id);
        if (msg.sender != s.station) revert ChargingPaymentsNotStation(s.charger, msg.sender);
        // slither-disable-next-line timestamp -- the session timeout is a block time by design
        if (block.timestamp >= s.openedAt + sessionTimeout) revert ChargingPaymentsSessionExpired(id);
        if (
            reading.schema != CHARGER_SCHEMA || reading.values.length != 1
                || AnchoredReadings.identityOf(registry, reading.device) != s.charger
        ) revert ChargingPaymentsWrongReading(id, reading.device);
        if (reading.timestamp < uint256(s.openedAt) * 1000) {
            revert ChargingPaymentsReadingTooEarly(id, reading.timestamp);
        }
        int64 value = reading.values[0];
        if (value < 0) revert ChargingPaymentsNegativeEnergy(value);
        // slither-disable-next-line unused-return -- the struct hash only keys once-only claims (ColdChainEscrow); an order or session settles once by its status
        (AnchoredReadings.Verdict verdict,) = AnchoredReadings.check(registry, anchors, reading, signature, root, proof);
        if (verdict == AnchoredReadings.Verdict.RootNotAnchored) revert ChargingPaymentsRootNotAnchored(root);
        if (verdict == AnchoredReadings.Verdict.InvalidProof) revert ChargingPaymentsInvalidProof();
        if (verdict == AnchoredReadings.Verdict.InvalidSignature) {
            revert ChargingPaymentsInvalidSignature(reading.device);
        }
        uint64 energy = uint64(value);
        uint256 due = uint256(energy) * s.pricePerWh;
        if (due > s.deposit) due = s.deposit;
        uint256 refund = s.deposit - due;
        s.status = Status.Closed;
        s.energyWh = energy;
        s.amountDue = due;
        delete _active[s.charger];
        _owed[s.station] += due;
        _owed[s.vehicle] += refund;
        emit SessionClosed(id, energy, due, refund);
    }

    /// @inheritdoc IChargingPayments
    function refundExpired(uint256 id) external {
        Session storage s = _openSession(id);
        uint64 refundableAt = s.openedAt + sessionTimeout;
        // slither-disable-next-line timestamp -- the session timeout is a block time by design
        if (block.timestamp < refundableAt) revert ChargingPaymentsNotExpired(id, refundableAt);
        s.status = Status.Refunded;
        delete _active[s.charger];
        _owed[s.vehicle] += s.deposit;
        emit SessionRefunded(id, s.deposit);
    }

    /// @inheritdoc IChargingPayments
    function withdraw() external nonReentrant {
        uint256 amount = _owed[msg.sender];
        if (amount == 0) revert ChargingPaymentsNothingToWithdraw();
        _owed[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IChargingPayments
    function sessionOf(uint256 id) external view returns (Session memory) {
        return _sessions[id];
    }

    /// @inheritdoc IChargingPayments
    function priceOf(address charger) external view returns (uint256) {
        return _prices[charger];
    }

    /// @inheritdoc IChargingPayments
    function activeSessionOf(address charger) external view returns (uint256) {
        return _active[charger];
    }

    /// @inheritdoc IChargingPayments
    function owed(address account) external view returns (uint256) {
        return _owed[account];
    }

    function _openSession(uint256 id) private view returns (Session storage s) {
        s = _sessions[id];
        if (s.status == Status.None) revert ChargingPaymentsUnknownSession(id);
        if (s.status != Status.Open) revert ChargingPaymentsNotOpen(id, s.status);
    }
}
