// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestStablecoin
/// @notice A 6-decimal dollar-like ERC-20 for development chains only ("ChainSense Test USD",
/// tUSD). It has no value: the minter role can create any amount. Real deployments configure the
/// settlement contracts with an existing stablecoin instead.
/// @dev Roles: DEFAULT_ADMIN_ROLE manages roles; MINTER_ROLE mints.
contract TestStablecoin is ERC20, AccessControl {
    /// @notice Role allowed to mint.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    /// @notice The zero address was given where an address is required.
    error TestStablecoinZeroAddress();

    /// @notice Deploys the token; `admin` gets DEFAULT_ADMIN_ROLE and MINTER_ROLE.
    /// @param admin The admin and first minter.
    constructor(address admin) ERC20("ChainSense Test USD", "tUSD") {
        if (admin == address(0)) revert TestStablecoinZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, admin);
    }

    /// @notice Six decimals, like USDC: 1 tUSD = 1,000,000 units.
    /// @return 6.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mints `amount` units to `to`.
    /// @param to The receiver.
    /// @param amount Token units (6 decimals).
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }
}
