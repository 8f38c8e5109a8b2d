// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title ReentrantToken
/// @notice TEST ONLY, hostile on purpose: an ERC-20 that, once armed, calls back into a target
/// contract in the middle of its next transfer (with the token as msg.sender) and bubbles up
/// whatever the call reverts with. The settlement contract tests use it to show that every
/// function moving tokens is guarded against reentrancy. Built into tests/contracts/artifacts,
/// never shipped in the Python package and not part of the Slither run.
contract ReentrantToken is ERC20 {
    address private _target;
    bytes private _payload;
    bool private _armed;

    constructor() ERC20("Reentrant Test Token", "EVIL") {}

    /// @notice Anyone may mint: this is a test token.
    /// @param to The receiver.
    /// @param amount Token units.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Arms the attack: the next transfer calls `target` with `payload`.
    /// @param target The contract to re-enter.
    /// @param payload The calldata.
    function arm(address target, bytes calldata payload) external {
        _target = target;
        _payload = payload;
        _armed = true;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (_armed && from != address(0)) {
            _armed = false;
            (bool ok, bytes memory ret) = _target.call(_payload);
            if (!ok) {
                assembly {
                    revert(add(ret, 32), mload(ret))
                }
            }
        }
    }
}
