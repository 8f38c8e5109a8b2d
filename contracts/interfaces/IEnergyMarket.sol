// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IDeviceRegistry} from "./IDeviceRegistry.sol";

/// @title IEnergyMarket
/// @notice Peer-to-peer energy trading per metering interval: participants deposit, post bids
/// (buy) and asks (sell, backed by a smart meter they own) before the interval starts; the
/// interval clears as a uniform-price double auction; producers are paid for the energy their
/// signed, anchored meter readings prove they exported, not for what they offered.
/// @dev Interval `k` covers block times [k * intervalSeconds, (k + 1) * intervalSeconds).
/// Orders are taken until it starts; anyone clears it once it has started (on-chain, see
/// EnergyMarket); delivery is proven until `settlementPeriod` after it ends; bids are finalized
/// after that.
///
/// Clearing rule: bids sorted by price descending, asks ascending, earlier orders first at equal
/// price; they are matched while the best bid >= the best ask, partially filling the last pair.
/// The uniform price is the floor of the midpoint of the last matched bid and ask prices, so every
/// matched bid pays at most its limit and every matched ask gets at least its limit.
///
/// Shortfall rule: a seller proves delivery with one `chainsense.meter.v1` reading of its meter
/// taken inside the interval (values[1] = energy_exported, Wh); it is paid price * min(sold,
/// exported) at once. A seller that proves nothing by the deadline delivered 0. The interval's
/// shortfall is shared by all its buyers pro rata to their fills: a buyer pays
/// ceil(price * filled * delivered / sold) and gets the rest of its reservation back. Rounding up
/// leaves at most one token unit per buyer, which goes to the treasury when the last buyer's
/// bid is finalized.
interface IEnergyMarket {
    /// @notice An order's side.
    enum Side {
        Bid,
        Ask
    }

    /// @notice One order.
    /// @param participant Whose order it is (pays for bids, is paid for asks).
    /// @param side Bid (buy) or Ask (sell).
    /// @param settled Bid: finalized; ask: delivery proven.
    /// @param interval The interval index.
    /// @param meter Asks: the meter (device identity) that must show the export.
    /// @param quantityWh Wh offered or wanted.
    /// @param filledWh Wh matched at clearing.
    /// @param deliveredWh Asks: Wh paid for after the delivery proof.
    /// @param pricePerWh Limit price, token units per Wh.
    /// @param reserved Bids: token units held for the order (limit * quantity, then price * filled).
    struct Order {
        address participant;
        Side side;
        bool settled;
        uint64 interval;
        address meter;
        uint64 quantityWh;
        uint64 filledWh;
        uint64 deliveredWh;
        uint128 pricePerWh;
        uint256 reserved;
    }

    /// @notice One interval's clearing and settlement totals.
    /// @param cleared Whether it was cleared.
    /// @param price Uniform clearing price, token units per Wh (0 = nothing traded).
    /// @param soldWh Total Wh matched.
    /// @param deliveredWh Total Wh proven delivered (and paid) so far.
    /// @param filledBids Bids with a fill.
    /// @param finalizedBids Filled bids finalized so far.
    /// @param charged Token units charged to finalized bids so far.
    struct Interval {
        bool cleared;
        uint128 price;
        uint64 soldWh;
        uint64 deliveredWh;
        uint32 filledBids;
        uint32 finalizedBids;
        uint256 charged;
    }

    /// @notice Emitted when a participant deposits.
    /// @param participant The participant.
    /// @param amount Token units.
    event Deposited(address indexed participant, uint256 amount);

    /// @notice Emitted when a participant lets (or stops letting) an agent place orders for it.
    /// @param participant The participant.
    /// @param agent The agent (e.g. the platform's forecasting service).
    /// @param allowed Whether it may.
    event AgentSet(address indexed participant, address indexed agent, bool allowed);

    /// @notice Emitted when an order is placed.
    /// @param id The order id.
    /// @param participant The participant.
    /// @param interval The interval.
    /// @param side Bid or Ask.
    /// @param quantityWh Wh.
    /// @param pricePerWh Limit price.
    /// @param placedBy The participant or its agent.
    event OrderPlaced(
        uint256 indexed id,
        address indexed participant,
        uint64 indexed interval,
        Side side,
        uint64 quantityWh,
        uint128 pricePerWh,
        address placedBy
    );

    /// @notice Emitted when an interval clears.
    /// @param interval The interval.
    /// @param price Uniform price (0 = no trade).
    /// @param soldWh Wh matched.
    event IntervalCleared(uint64 indexed interval, uint128 price, uint64 soldWh);

    /// @notice Emitted when a seller's delivery is proven and paid.
    /// @param id The ask id.
    /// @param meter The meter.
    /// @param exportedWh Wh the reading shows exported.
    /// @param paidWh Wh paid for (min of sold and exported).
    /// @param amount Token units credited to the seller.
    event DeliveryProven(uint256 indexed id, address indexed meter, uint64 exportedWh, uint64 paidWh, uint256 amount);

    /// @notice Emitted when a bid is finalized.
    /// @param id The bid id.
    /// @param charged Token units paid for delivered energy.
    /// @param refunded Token units returned to the buyer's balance.
    event BidFinalized(uint256 indexed id, uint256 charged, uint256 refunded);

    /// @notice Emitted when a participant withdraws its free balance.
    /// @param account The account.
    /// @param amount Token units sent.
    event Withdrawn(address indexed account, uint256 amount);

    /// @notice The zero address was given where an address is required.
    error EnergyMarketZeroAddress();
    /// @notice The caller may not act for this participant.
    /// @param participant The participant.
    /// @param caller The caller.
    error EnergyMarketNotAuthorized(address participant, address caller);
    /// @notice Quantity and price must be positive.
    error EnergyMarketInvalidOrder();
    /// @notice The free balance is too small.
    /// @param needed Token units needed.
    /// @param available Token units available.
    error EnergyMarketInsufficientBalance(uint256 needed, uint256 available);
    /// @notice The participant does not own the meter (DeviceRegistry owner).
    /// @param meter The meter.
    error EnergyMarketNotMeterOwner(address meter);
    /// @notice The meter already backs an ask in this interval.
    /// @param meter The meter.
    /// @param interval The interval.
    error EnergyMarketMeterAlreadyOffered(address meter, uint64 interval);
    /// @notice The interval already has the most orders of this side.
    /// @param interval The interval.
    error EnergyMarketOrderBookFull(uint64 interval);
    /// @notice The interval has started: no more orders.
    /// @param interval The interval.
    error EnergyMarketOrdersClosed(uint64 interval);
    /// @notice The interval has not started: it cannot clear yet.
    /// @param interval The interval.
    error EnergyMarketNotStarted(uint64 interval);
    /// @notice The interval has already cleared.
    /// @param interval The interval.
    error EnergyMarketAlreadyCleared(uint64 interval);
    /// @notice The interval has not cleared yet.
    /// @param interval The interval.
    error EnergyMarketNotCleared(uint64 interval);
    /// @notice No order has this id, or it is of the wrong side.
    /// @param id The id.
    error EnergyMarketUnknownOrder(uint256 id);
    /// @notice The order is already settled, or has nothing to settle.
    /// @param id The id.
    error EnergyMarketNothingToSettle(uint256 id);
    /// @notice Delivery proofs for this interval are closed.
    /// @param interval The interval.
    error EnergyMarketSettlementClosed(uint64 interval);
    /// @notice Bids of this interval cannot be finalized before the delivery deadline.
    /// @param interval The interval.
    /// @param at Block time from which they can.
    error EnergyMarketSettlementOpen(uint64 interval, uint64 at);
    /// @notice The reading is not from the ask's meter, has another schema, or lies outside the interval.
    /// @param id The ask id.
    error EnergyMarketWrongReading(uint256 id);
    /// @notice The Merkle root is not anchored in the ReadingAnchor.
    /// @param root The root.
    error EnergyMarketRootNotAnchored(bytes32 root);
    /// @notice The Merkle proof does not lead from the reading to the root.
    error EnergyMarketInvalidProof();
    /// @notice The signature is not the meter's, or its key was not valid at anchoring time.
    /// @param key The reading's signing key.
    error EnergyMarketInvalidSignature(address key);
    /// @notice The caller has no free balance.
    error EnergyMarketNothingToWithdraw();

    /// @notice Pulls `amount` from the caller into its free balance (approve first).
    /// @param amount Token units.
    function deposit(uint256 amount) external;

    /// @notice Lets `agent` place orders for the caller (opt-in for automated, forecast-driven
    /// trading), or stops it.
    /// @param agent The agent.
    /// @param allowed Whether it may.
    function setAgent(address agent, bool allowed) external;

    /// @notice Places a bid: reserves quantity * limit price from the participant's free balance.
    /// @param participant The buyer (the caller or one that approved it as agent).
    /// @param interval The interval; it must not have started.
    /// @param quantityWh Wh wanted.
    /// @param pricePerWh Highest price, token units per Wh.
    /// @return id The order id.
    function placeBid(address participant, uint64 interval, uint64 quantityWh, uint128 pricePerWh)
        external
        returns (uint256 id);

    /// @notice Places an ask backed by a meter the participant owns (one ask per meter and interval).
    /// @param participant The seller (the caller or one that approved it as agent).
    /// @param interval The interval; it must not have started.
    /// @param meter The meter identity that will prove the export.
    /// @param quantityWh Wh offered.
    /// @param pricePerWh Lowest price, token units per Wh.
    /// @return id The order id.
    function placeAsk(address participant, uint64 interval, address meter, uint64 quantityWh, uint128 pricePerWh)
        external
        returns (uint256 id);

    /// @notice Anyone: clears a started interval (uniform-price double auction, on-chain) and
    /// returns every bid's unneeded reservation to its buyer's free balance.
    /// @param interval The interval.
    function clear(uint64 interval) external;

    /// @notice Anyone: proves an ask's delivery with its meter's anchored reading for the
    /// interval, and pays the seller for min(sold, exported) Wh at the clearing price.
    /// @param id The ask id.
    /// @param reading A chainsense.meter.v1 reading of the ask's meter, taken inside the interval.
    /// @param signature The meter's EIP-712 signature.
    /// @param root An anchored root holding the reading.
    /// @param proof The Merkle path from the reading's leaf to `root`.
    function proveDelivery(
        uint256 id,
        IDeviceRegistry.Reading calldata reading,
        bytes calldata signature,
        bytes32 root,
        bytes32[] calldata proof
    ) external;

    /// @notice Anyone: after the delivery deadline, charges a filled bid its share of the
    /// delivered energy and refunds the rest to the buyer's free balance.
    /// @param id The bid id.
    function finalizeBid(uint256 id) external;

    /// @notice Sends the caller its whole free balance (pull payment).
    function withdraw() external;

    /// @notice An order.
    /// @param id The id.
    /// @return The order (participant 0 for an unknown id).
    function orderOf(uint256 id) external view returns (Order memory);

    /// @notice An interval's totals.
    /// @param interval The interval.
    /// @return The totals.
    function intervalOf(uint64 interval) external view returns (Interval memory);

    /// @notice The ids of an interval's orders, bids then asks, in placing order.
    /// @param interval The interval.
    /// @return bids Bid ids.
    /// @return asks Ask ids.
    function ordersOf(uint64 interval) external view returns (uint256[] memory bids, uint256[] memory asks);

    /// @notice A participant's free balance (deposits, refunds and sales not reserved by a bid).
    /// @param account The account.
    /// @return Token units.
    function balanceOf(address account) external view returns (uint256);

    /// @notice Whether `agent` may place orders for `participant`.
    /// @param participant The participant.
    /// @param agent The agent.
    /// @return True when allowed.
    function isAgent(address participant, address agent) external view returns (bool);
}
