// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IDeviceRegistry} from "./IDeviceRegistry.sol";

/// @title IChargingPayments
/// @notice Pay-per-use sessions (EV charging, and any metered service): a vehicle's wallet opens
/// a session at a charger with a deposit; the charger's signed, anchored meter reading fixes the
/// amount owed; the station is paid and the rest refunded. A session the station never closes
/// is refunded in full after a timeout.
/// @dev A charger is a DeviceRegistry identity signing `chainsense.charger.v1` readings, whose
/// single value is `energy_delivered` (Wh, scale 0) so far in the current session. Its station
/// is the device's owner in the registry, who sets the price. A charger serves one session at a
/// time, so a reading signed after a session opened and before it closed belongs to it.
/// Amount owed = min(deposit, energyWh * pricePerWh), with the price fixed when the session opened.
interface IChargingPayments {
    /// @notice Where a session is in its life.
    enum Status {
        None,
        Open,
        Closed,
        Refunded
    }

    /// @notice One charging session.
    /// @param vehicle The wallet that opened it and gets the refund.
    /// @param charger The charger's device identity.
    /// @param station Who is paid (the charger's owner when the session opened).
    /// @param status Open, Closed or Refunded.
    /// @param openedAt Block time the session opened, seconds.
    /// @param energyWh Energy the closing reading proved, Wh.
    /// @param pricePerWh Token units per Wh, fixed at opening.
    /// @param deposit Token units deposited.
    /// @param amountDue Token units paid to the station (0 until closed).
    struct Session {
        address vehicle;
        address charger;
        address station;
        Status status;
        uint64 openedAt;
        uint64 energyWh;
        uint256 pricePerWh;
        uint256 deposit;
        uint256 amountDue;
    }

    /// @notice Emitted when a station sets a charger's price.
    /// @param charger The charger identity.
    /// @param station The station (device owner).
    /// @param pricePerWh Token units per Wh (0 = not available).
    event PriceSet(address indexed charger, address indexed station, uint256 pricePerWh);

    /// @notice Emitted when a session opens.
    /// @param id The session id.
    /// @param vehicle The vehicle wallet.
    /// @param charger The charger identity.
    /// @param deposit Token units deposited.
    /// @param pricePerWh The price fixed for the session.
    event SessionOpened(
        uint256 indexed id, address indexed vehicle, address indexed charger, uint256 deposit, uint256 pricePerWh
    );

    /// @notice Emitted when the station closes a session with a proven meter reading.
    /// @param id The session id.
    /// @param energyWh Energy delivered, Wh.
    /// @param amountDue Token units credited to the station.
    /// @param refund Token units credited back to the vehicle.
    event SessionClosed(uint256 indexed id, uint64 energyWh, uint256 amountDue, uint256 refund);

    /// @notice Emitted when an unclosed session is refunded after the timeout.
    /// @param id The session id.
    /// @param refund Token units credited back to the vehicle.
    event SessionRefunded(uint256 indexed id, uint256 refund);

    /// @notice Emitted when an account withdraws what it is owed.
    /// @param account The account.
    /// @param amount Token units sent.
    event Withdrawn(address indexed account, uint256 amount);

    /// @notice The zero address was given where an address is required.
    error ChargingPaymentsZeroAddress();
    /// @notice The caller is not the charger's owner in the DeviceRegistry.
    /// @param charger The charger.
    /// @param caller The caller.
    error ChargingPaymentsNotStation(address charger, address caller);
    /// @notice The charger has no price: it does not take sessions.
    /// @param charger The charger.
    error ChargingPaymentsNoPrice(address charger);
    /// @notice The charger is busy with another open session.
    /// @param charger The charger.
    /// @param session The open session.
    error ChargingPaymentsChargerBusy(address charger, uint256 session);
    /// @notice A deposit must be positive.
    error ChargingPaymentsZeroDeposit();
    /// @notice No session has this id.
    /// @param id The id.
    error ChargingPaymentsUnknownSession(uint256 id);
    /// @notice The session is not open.
    /// @param id The id.
    /// @param status Its status.
    error ChargingPaymentsNotOpen(uint256 id, Status status);
    /// @notice The session timed out: it can only be refunded.
    /// @param id The id.
    error ChargingPaymentsSessionExpired(uint256 id);
    /// @notice The timeout has not passed yet.
    /// @param id The id.
    /// @param refundableAt Block time from which it can be refunded.
    error ChargingPaymentsNotExpired(uint256 id, uint64 refundableAt);
    /// @notice The reading is not from this session's charger, or has another schema.
    /// @param id The id.
    /// @param key The reading's signing key.
    error ChargingPaymentsWrongReading(uint256 id, address key);
    /// @notice The reading was taken before the session opened.
    /// @param id The id.
    /// @param timestamp The reading time, ms.
    error ChargingPaymentsReadingTooEarly(uint256 id, uint64 timestamp);
    /// @notice The reading's energy is negative.
    /// @param value The value.
    error ChargingPaymentsNegativeEnergy(int64 value);
    /// @notice The Merkle root is not anchored in the ReadingAnchor.
    /// @param root The root.
    error ChargingPaymentsRootNotAnchored(bytes32 root);
    /// @notice The Merkle proof does not lead from the reading to the root.
    error ChargingPaymentsInvalidProof();
    /// @notice The signature is not the charger's, or its key was not valid at anchoring time.
    /// @param key The reading's signing key.
    error ChargingPaymentsInvalidSignature(address key);
    /// @notice The caller is owed nothing.
    error ChargingPaymentsNothingToWithdraw();

    /// @notice Station: sets the price of a charger it owns (0 stops new sessions).
    /// @param charger The charger identity.
    /// @param pricePerWh Token units per Wh.
    function setPrice(address charger, uint256 pricePerWh) external;

    /// @notice Vehicle: opens a session and pulls `deposit` from the caller (approve first).
    /// @param charger The charger identity.
    /// @param deposit Token units; the most the session can cost.
    /// @return id The session id (from 1).
    function openSession(address charger, uint256 deposit) external returns (uint256 id);

    /// @notice Station: closes a session with the charger's anchored reading of the energy
    /// delivered; before the timeout.
    /// @param id The session id.
    /// @param reading A chainsense.charger.v1 reading signed by the charger after the session opened.
    /// @param signature The charger's EIP-712 signature.
    /// @param root An anchored root holding the reading.
    /// @param proof The Merkle path from the reading's leaf to `root`.
    function closeSession(
        uint256 id,
        IDeviceRegistry.Reading calldata reading,
        bytes calldata signature,
        bytes32 root,
        bytes32[] calldata proof
    ) external;

    /// @notice Anyone: refunds the whole deposit of a session not closed within the timeout.
    /// @param id The session id.
    function refundExpired(uint256 id) external;

    /// @notice Sends the caller everything it is owed (pull payment).
    function withdraw() external;

    /// @notice A session.
    /// @param id The id.
    /// @return The session (status None for an unknown id).
    function sessionOf(uint256 id) external view returns (Session memory);

    /// @notice A charger's price, token units per Wh (0 = not available).
    /// @param charger The charger identity.
    /// @return The price.
    function priceOf(address charger) external view returns (uint256);

    /// @notice The open session of a charger, or 0.
    /// @param charger The charger identity.
    /// @return The session id.
    function activeSessionOf(address charger) external view returns (uint256);

    /// @notice What an account can withdraw.
    /// @param account The account.
    /// @return Token units.
    function owed(address account) external view returns (uint256);
}
