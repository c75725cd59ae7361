// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title TestToken
/// @notice A TEST-ONLY ERC-20 for development and tests: anyone may mint, and anyone may block an
///         address (transfers to or from a blocked address revert with `Blocked`) to inject faults.
/// @dev Like USDC v2.2, the blocked flag lives in the top bit of the balance slot, so checking the
///      recipient costs nothing beyond the balance read a transfer does anyway. Balances therefore
///      stay below 2**255, which is enforced through totalSupply. An infinite allowance
///      (type(uint256).max) is never decremented, as in OpenZeppelin's ERC20.
contract TestToken {
    error Blocked(address account);
    error ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed);
    error ERC20InsufficientAllowance(address spender, uint256 allowance, uint256 needed);
    error ERC20InvalidReceiver(address receiver);
    error ERC20InvalidSpender(address spender);
    error SupplyOverflow();

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    uint256 private constant BLOCKED = 1 << 255;

    string public name;
    string public symbol;
    uint8 public immutable decimals;
    uint256 public totalSupply;
    mapping(address owner => mapping(address spender => uint256)) public allowance;
    /// @dev balance | BLOCKED flag.
    mapping(address account => uint256) private _state;

    constructor(string memory name_, string memory symbol_, uint8 decimals_) {
        name = name_;
        symbol = symbol_;
        decimals = decimals_;
    }

    function balanceOf(address account) external view returns (uint256) {
        return _state[account] & ~BLOCKED;
    }

    function isBlocked(address account) external view returns (bool) {
        return _state[account] & BLOCKED != 0;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _transfer(msg.sender, to, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < value) revert ERC20InsufficientAllowance(msg.sender, allowed, value);
            unchecked {
                allowance[from][msg.sender] = allowed - value;
            }
        }
        _transfer(from, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        if (spender == address(0)) revert ERC20InvalidSpender(address(0));
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    /// @notice Test-only: anyone may mint.
    function mint(address to, uint256 value) external {
        if (to == address(0)) revert ERC20InvalidReceiver(address(0));
        uint256 supply = totalSupply + value;
        if (supply >= BLOCKED) revert SupplyOverflow();
        totalSupply = supply;
        uint256 toState = _state[to];
        if (toState & BLOCKED != 0) revert Blocked(to);
        unchecked {
            _state[to] = toState + value; // balance <= totalSupply < 2**255
        }
        emit Transfer(address(0), to, value);
    }

    /// @notice Test-only: anyone may block or unblock an address.
    function setBlocked(address account, bool blocked) external {
        uint256 state = _state[account];
        _state[account] = blocked ? state | BLOCKED : state & ~BLOCKED;
    }

    function _transfer(address from, address to, uint256 value) private {
        if (to == address(0)) revert ERC20InvalidReceiver(address(0));
        uint256 fromState = _state[from];
        if (fromState & BLOCKED != 0) revert Blocked(from);
        if (fromState < value) revert ERC20InsufficientBalance(from, fromState, value);
        unchecked {
            _state[from] = fromState - value; // written before `to` is read: from == to is a no-op
        }
        uint256 toState = _state[to];
        if (toState & BLOCKED != 0) revert Blocked(to);
        unchecked {
            _state[to] = toState + value; // balance <= totalSupply < 2**255
        }
        emit Transfer(from, to, value);
    }
}
