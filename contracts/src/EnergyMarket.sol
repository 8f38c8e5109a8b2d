// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {IDeviceRegistry} from "../interfaces/IDeviceRegistry.sol";
import {IEnergyMarket} from "../interfaces/IEnergyMarket.sol";
import {IReadingAnchor} from "../interfaces/IReadingAnchor.sol";
import {AnchoredReadings} from "./AnchoredReadings.sol";

/// @title EnergyMarket
/// @notice Peer-to-peer energy market: a uniform-price double auction per metering interval,
/// cleared on-chain, with producers paid from their meters' signed, anchored readings.
/// @dev Why on-chain clearing: a result computed off-chain can only be checked on-chain by
/// reading every order of the interval anyway (to confirm that no unmatched bid/ask pair
/// crosses and that the price lies between the marginal prices), so checking costs the same
/// order of gas as clearing, and clearing on-chain needs no trusted party and no dispute game.
/// The order book is capped at MAX_ORDERS_PER_SIDE per side and interval, which bounds the
/// clearing gas (an insertion sort in memory plus one pass); a community of tens of homes per
/// interval fits. Larger markets would split into zones, or move to off-chain clearing with
/// a fraud proof. See IEnergyMarket for the clearing and shortfall rules.
/// Roles: DEFAULT_ADMIN_ROLE manages roles and pauses. Pausing stops deposits and new orders
/// only; clearing, delivery proofs, finalization and withdrawals go on, so a pause cannot make a
/// seller miss its delivery deadline or trap funds.
contract EnergyMarket is IEnergyMarket, AccessControl, Pausable, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice The schema id of meter readings, chainsense.meter.v1 version 1, values
    /// [energy_imported Wh scale 0, energy_exported Wh scale 0]: keccak256(abi.encode(name,
    /// uint32 version, (string name, string unit, int8 scale)[] metrics)) (docs/proof-format.md).
    bytes32 public constant METER_SCHEMA = 0xa136d8aebb7dee3158f738f7f0a5b1f8ed6805362995f8ed7f0f688680be30e5;
    /// @notice Most orders per side and interval (bounds the clearing gas).
    uint256 public constant MAX_ORDERS_PER_SIDE = 32;

    /// @notice The payment token.
    IERC20 public immutable token;
    /// @notice The DeviceRegistry (meter ownership and reading signatures).
    IDeviceRegistry public immutable registry;
    /// @notice The ReadingAnchor holding the batch roots.
    IReadingAnchor public immutable anchors;
    /// @notice Who receives the rounding remainder of each interval.
    address public immutable treasury;
    /// @notice Length of a metering interval, seconds.
    uint64 public immutable intervalSeconds;
    /// @notice Seconds after an interval's end during which delivery can be proven.
    uint64 public immutable settlementPeriod;

    /// @dev One side of an interval's order book, sorted, in memory while clearing.
    struct Book {
        uint256[] ids;
        uint128[] prices;
        uint64[] quantities;
        uint64[] fills;
    }

    uint256 private _nextId = 1;
    mapping(uint256 id => Order) private _orders;
    mapping(uint64 interval => Interval) private _intervals;
    mapping(uint64 interval => uint256[]) private _bids;
    mapping(uint64 interval => uint256[]) private _asks;
    mapping(uint64 interval => mapping(address meter => bool)) private _offered;
    mapping(address account => uint256) private _balances;
    mapping(address participant => mapping(address agent => bool)) private _agents;

    /// @notice Deploys the market.
    /// @param admin Gets DEFAULT_ADMIN_ROLE.
    /// @param treasury_ Receives rounding remainders.
    /// @param token_ The ERC-20 payments are made in.
    /// @param registry_ The DeviceRegistry.
    /// @param anchors_ The ReadingAnchor.
    /// @param intervalSeconds_ Metering interval length, seconds (> 0).
    /// @param settlementPeriod_ Delivery proof period after each interval, seconds (> 0).
    constructor(
        address admin,
        address treasury_,
        IERC20 token_,
        IDeviceRegistry registry_,
        IReadingAnchor anchors_,
        uint64 intervalSeconds_,
        uint64 settlementPeriod_
    ) {
        if (
            admin == address(0) || treasury_ == address(0) || address(token_) == address(0)
                || address(registry_) == address(0) || address(anchors_) == address(0)
        ) revert EnergyMarketZeroAddress();
        if (intervalSeconds_ == 0 || settlementPeriod_ == 0) revert EnergyMarketInvalidOrder();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        treasury = treasury_;
        token = token_;
        registry = registry_;
        anchors = anchors_;
        intervalSeconds = intervalSeconds_;
        settlementPeriod = settlementPeriod_;
    }

    /// @notice Pauses deposits and new orders.
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @notice Lifts the pause.
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    /// @inheritdoc IEnergyMarket
    function deposit(uint256 amount) external nonReentrant whenNotPaused {
        if (amount == 0) revert EnergyMarketInvalidOrder();
        _balances[msg.sender] += amount;
        emit Deposited(msg.sender, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IEnergyMarket
    function setAgent(address agent, bool allowed) external {
        if (agent == address(0)) revert EnergyMarketZeroAddress();
        _agents[msg.sender][agent] = allowed;
        emit AgentSet(msg.sender, agent, allowed);
    }

    /// @inheritdoc IEnergyMarket
    function placeBid(address participant, uint64 interval, uint64 quantityWh, uint128 pricePerWh)
        external
        whenNotPaused
        returns (uint256 id)
    {
        _checkOrder(participant, interval, quantityWh, pricePerWh, _bids[interval]);
        uint256 amount = uint256(quantityWh) * pricePerWh;
        uint256 available = _balances[participant];
        if (amount > available) revert EnergyMarketInsufficientBalance(amount, available);
        _balances[participant] = available - amount;
        id = _place(participant, Side.Bid, interval, address(0), quantityWh, pricePerWh, amount);
        _bids[interval].push(id);
    }

    /// @inheritdoc IEnergyMarket
    function placeAsk(address participant, uint64 interval, address meter, uint64 quantityWh, uint128 pricePerWh)
        external
        whenNotPaused
        returns (uint256 id)
    {
        _checkOrder(participant, interval, quantityWh, pricePerWh, _asks[interval]);
        if (registry.deviceOf(meter).owner != participant) revert EnergyMarketNotMeterOwner(meter);
        if (_offered[interval][meter]) revert EnergyMarketMeterAlreadyOffered(meter, interval);
        _offered[interval][meter] = true;
        id = _place(participant, Side.Ask, interval, meter, quantityWh, pricePerWh, 0);
        _asks[interval].push(id);
    }

    /// @inheritdoc IEnergyMarket
    function clear(uint64 interval) external {
        Interval storage iv = _intervals[interval];
        if (iv.cleared) revert EnergyMarketAlreadyCleared(interval);
        // slither-disable-next-line timestamp -- intervals are block-time periods by design
        if (block.timestamp < _start(interval)) revert EnergyMarketNotStarted(interval);
        Book memory bids = _book(_bids[interval], true);
        Book memory asks = _book(_asks[interval], false);
        (uint128 price, uint64 sold) = _match(bids, asks);
        iv.cleared = true;
        iv.price = price;
        iv.soldWh = sold;
        iv.filledBids = _applyBidFills(bids, price);
        for (uint256 k = 0; k < asks.ids.length; ++k) {
            Order storage o = _orders[asks.ids[k]];
            o.filledWh = asks.fills[k];
            if (asks.fills[k] == 0) o.settled = true;
        }
        emit IntervalCleared(interval, price, sold);
    }

    /// @inheritdoc IEnergyMarket
    function proveDelivery(
        uint256 id,
        IDeviceRegistry.Reading calldata reading,
        bytes calldata signature,
        bytes32 root,
        bytes32[] calldata proof
    ) external {
        Order storage a = _orders[id];
        if (a.participant == address(0) || a.side != Side.Ask) revert EnergyMarketUnknownOrder(id);
        Interval storage iv = _intervals[a.interval];
        if (!iv.cleared) revert EnergyMarketNotCleared(a.interval);
        if (a.settled) revert EnergyMarketNothingToSettle(id);
        uint256 start = _start(a.interval);
        uint256 end = start + intervalSeconds;
        // slither-disable-next-line timestamp -- the delivery deadline is a block time by design
        if (block.timestamp >= end + settlementPeriod) revert EnergyMarketSettlementClosed(a.interval);
        if (
            reading.schema != METER_SCHEMA || reading.values.length != 2 || reading.values[1] < 0
                || reading.timestamp < start * 1000 || reading.timestamp > end * 1000
                || AnchoredReadings.identityOf(registry, reading.device) != a.meter
        ) revert EnergyMarketWrongReading(id);
        // slither-disable-next-line unused-return -- the struct hash only keys once-only claims (ColdChainEscrow); an order or session settles once by its status
        (AnchoredReadings.Verdict verdict,) = AnchoredReadings.check(registry, anchors, reading, signature, root, proof);
        if (verdict == AnchoredReadings.Verdict.RootNotAnchored) revert EnergyMarketRootNotAnchored(root);
        if (verdict == AnchoredReadings.Verdict.InvalidProof) revert EnergyMarketInvalidProof();
        if (verdict == AnchoredReadings.Verdict.InvalidSignature) revert EnergyMarketInvalidSignature(reading.device);
        uint64 exported = uint64(reading.values[1]);
        uint64 paid = exported < a.filledWh ? exported : a.filledWh;
        uint256 amount = uint256(paid) * iv.price;
        a.settled = true;
        a.deliveredWh = paid;
        iv.deliveredWh += paid;
        _balances[a.participant] += amount;
        emit DeliveryProven(id, a.meter, exported, paid, amount);
    }

    /// @inheritdoc IEnergyMarket
    function finalizeBid(uint256 id) external {
        Order storage b = _orders[id];
        if (b.participant == address(0) || b.side != Side.Bid) revert EnergyMarketUnknownOrder(id);
        Interval storage iv = _intervals[b.interval];
        if (!iv.cleared) revert EnergyMarketNotCleared(b.interval);
        if (b.settled) revert EnergyMarketNothingToSettle(id);
        uint64 deadline = uint64(_start(b.interval) + intervalSeconds + settlementPeriod);
        // slither-disable-next-line timestamp -- the delivery deadline is a block time by design
        if (block.timestamp < deadline) revert EnergyMarketSettlementOpen(b.interval, deadline);
        // Pro-rata share of the interval's delivered energy, rounded up (see IEnergyMarket).
        uint256 charge = Math.mulDiv(b.reserved, iv.deliveredWh, iv.soldWh, Math.Rounding.Ceil);
        uint256 refund = b.reserved - charge;
        b.settled = true;
        b.reserved = 0;
        iv.charged += charge;
        iv.finalizedBids += 1;
        _balances[b.participant] += refund;
        if (iv.finalizedBids == iv.filledBids) {
            _balances[treasury] += iv.charged - uint256(iv.deliveredWh) * iv.price;
        }
        emit BidFinalized(id, charge, refund);
    }

    /// @inheritdoc IEnergyMarket
    function withdraw() external nonReentrant {
        uint256 amount = _balances[msg.sender];
        if (amount == 0) revert EnergyMarketNothingToWithdraw();
        _balances[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IEnergyMarket
    function orderOf(uint256 id) external view returns (Order memory) {
        return _orders[id];
    }

    /// @inheritdoc IEnergyMarket
    function intervalOf(uint64 interval) external view returns (Interval memory) {
        return _intervals[interval];
    }

    /// @inheritdoc IEnergyMarket
    function ordersOf(uint64 interval) external view returns (uint256[] memory bids, uint256[] memory asks) {
        return (_bids[interval], _asks[interval]);
    }

    /// @inheritdoc IEnergyMarket
    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }

    /// @inheritdoc IEnergyMarket
    function isAgent(address participant, address agent) external view returns (bool) {
        return _agents[participant][agent];
    }

    function _checkOrder(
        address participant,
        uint64 interval,
        uint64 quantityWh,
        uint128 pricePerWh,
        uint256[] storage book
    ) private view {
        if (msg.sender != participant && !_agents[participant][msg.sender]) {
            revert EnergyMarketNotAuthorized(participant, msg.sender);
        }
        if (quantityWh == 0 || pricePerWh == 0) revert EnergyMarketInvalidOrder();
        // slither-disable-next-line timestamp -- intervals are block-time periods by design
        if (block.timestamp >= _start(interval)) revert EnergyMarketOrdersClosed(interval);
        if (book.length >= MAX_ORDERS_PER_SIDE) revert EnergyMarketOrderBookFull(interval);
    }

    function _place(
        address participant,
        Side side,
        uint64 interval,
        address meter,
        uint64 quantityWh,
        uint128 pricePerWh,
        uint256 reserved
    ) private returns (uint256 id) {
        id = _nextId++;
        _orders[id] = Order({
            participant: participant,
            side: side,
            settled: false,
            interval: interval,
            meter: meter,
            quantityWh: quantityWh,
            filledWh: 0,
            deliveredWh: 0,
            pricePerWh: pricePerWh,
            reserved: reserved
        });
        emit OrderPlaced(id, participant, interval, side, quantityWh, pricePerWh, msg.sender);
    }

    /// @dev The double auction: walks bids (best first) against asks (best first) while they
    /// cross, filling both books in place; the price is the midpoint of the last matched pair.
    function _match(Book memory bids, Book memory asks) private pure returns (uint128 price, uint64 sold) {
        uint256 i = 0;
        uint256 j = 0;
        uint64 remBid = bids.ids.length > 0 ? bids.quantities[0] : 0;
        uint64 remAsk = asks.ids.length > 0 ? asks.quantities[0] : 0;
        while (i < bids.ids.length && j < asks.ids.length && bids.prices[i] >= asks.prices[j]) {
            uint64 q = remBid < remAsk ? remBid : remAsk;
            bids.fills[i] += q;
            asks.fills[j] += q;
            sold += q;
            remBid -= q;
            remAsk -= q;
            price = uint128((uint256(bids.prices[i]) + asks.prices[j]) / 2);
            if (remBid == 0 && ++i < bids.ids.length) remBid = bids.quantities[i];
            if (remAsk == 0 && ++j < asks.ids.length) remAsk = asks.quantities[j];
        }
    }

    /// @dev Records each bid's fill, keeps price * fill reserved and frees the rest; returns how
    /// many bids were filled.
    function _applyBidFills(Book memory bids, uint128 price) private returns (uint32 filledBids) {
        for (uint256 k = 0; k < bids.ids.length; ++k) {
            Order storage b = _orders[bids.ids[k]];
            uint256 keep = uint256(bids.fills[k]) * price;
            _balances[b.participant] += b.reserved - keep;
            b.filledWh = bids.fills[k];
            b.reserved = keep;
            if (bids.fills[k] == 0) b.settled = true;
            else ++filledBids;
        }
    }

    /// @dev A book sorted by price (descending for bids, ascending for asks); the insertion sort
    /// is stable, so earlier orders come first at equal price.
    function _book(uint256[] storage ids, bool descending) private view returns (Book memory book) {
        uint256 n = ids.length;
        book.ids = new uint256[](n);
        book.prices = new uint128[](n);
        book.quantities = new uint64[](n);
        book.fills = new uint64[](n);
        for (uint256 k = 0; k < n; ++k) {
            Order storage o = _orders[ids[k]];
            uint128 price = o.pricePerWh;
            uint256 m = k;
            while (m > 0 && (descending ? book.prices[m - 1] < price : book.prices[m - 1] > price)) {
                book.ids[m] = book.ids[m - 1];
                book.prices[m] = book.prices[m - 1];
                book.quantities[m] = book.quantities[m - 1];
                --m;
            }
            book.ids[m] = ids[k];
            book.prices[m] = price;
            book.quantities[m] = o.quantityWh;
        }
    }

    function _start(uint64 interval) private view returns (uint256) {
        return uint256(interval) * intervalSeconds;
    }
}
