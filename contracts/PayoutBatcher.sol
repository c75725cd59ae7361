// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title PayoutBatcher
/// @notice Pays many recipients in one transaction, straight from the caller's own funds.
/// @dev Stateless apart from `executed`: no owner, no upgrade path, never holds tokens, and holds
///      ether only for the duration of a `payNative` call. Each payout is one calldata word:
///      `uint256(amount) << 160 | uint160(recipient)` (amount in the high 96 bits). A transfer that
///      fails does not revert the batch; it is reported with `TransferFailed` and counted.
///      Batch ids are namespaced per payer, and a (payer, batchId) pair can be executed only once.
contract PayoutBatcher {
    /// @notice The caller already executed a batch with this id.
    error BatchAlreadyExecuted(uint256 batchId);
    /// @notice `msg.value` differs from the sum of the native payout amounts.
    error NativeValueMismatch(uint256 expected, uint256 sent);
    /// @notice `token` has no code, so a call to it would "succeed" without moving anything.
    error NotAContract(address token);
    /// @notice Returning the value of failed native payouts to the payer failed.
    error RefundFailed(address payer, uint256 amount);

    /// @notice One per batch. `token` is address(0) for native payouts.
    event BatchExecuted(
        address indexed payer,
        uint256 indexed batchId,
        address indexed token,
        uint256 paidCount,
        uint256 paidTotal,
        uint256 failedCount
    );
    /// @notice The payout at position `index` of the batch was not paid.
    event TransferFailed(uint256 indexed batchId, uint256 index, address recipient, uint256 amount);
    /// @notice A native payout was paid (ERC-20 payouts are evidenced by the token's own Transfer).
    event NativePaid(uint256 indexed batchId, address indexed recipient, uint256 amount);

    /// @notice Whether `payer` has executed the batch `batchId`.
    mapping(address payer => mapping(uint256 batchId => bool done)) public executed;

    /// @notice Pays every payout in `payouts` with `token.transferFrom(msg.sender, recipient, amount)`.
    /// @dev The caller must have approved this contract for at least the batch total. A transfer
    ///      that reverts, returns false or returns malformed data is reported and skipped. A token
    ///      that returns no data is treated as successful (non-standard tokens such as USDT).
    ///      If a transfer fails because the transaction ran out of gas (the call was starved by the
    ///      63/64 rule) the whole batch reverts instead, so an under-funded gas limit or gas
    ///      estimate can never turn into payouts silently reported as failed.
    function payERC20(uint256 batchId, address token, bytes32[] calldata payouts) external {
        _markExecuted(batchId);
        if (token.code.length == 0) revert NotAContract(token);

        bytes32 failedTopic = TransferFailed.selector;
        uint256 paidTotal;
        uint256 failedCount;
        assembly ("memory-safe") {
            // Call data at [ptr, ptr + 0x64): selector | from | to | amount. Only `to` and `amount`
            // change per payout. The return value (if any) lands in scratch space [0, 0x20).
            let ptr := mload(0x40)
            mstore(ptr, shl(224, 0x23b872dd)) // transferFrom(address,address,uint256)
            mstore(add(ptr, 0x04), caller())
            let end := add(payouts.offset, shl(5, payouts.length))
            for { let p := payouts.offset } lt(p, end) { p := add(p, 0x20) } {
                let word := calldataload(p)
                let amount := shr(160, word)
                mstore(add(ptr, 0x24), shr(96, shl(96, word)))
                mstore(add(ptr, 0x44), amount)
                paidTotal := add(paidTotal, amount)
                let g := gas()
                let ok := call(g, token, 0, ptr, 0x64, 0, 0x20)
                // Fast path: the call succeeded and returned (at least) a word equal to 1.
                if iszero(and(ok, and(gt(returndatasize(), 0x1f), eq(mload(0), 1)))) {
                    // Otherwise only a successful call with no return data counts as paid.
                    if iszero(and(ok, iszero(returndatasize()))) {
                        // Starved of gas (at most g/64 left): revert like an out-of-gas would.
                        if lt(gas(), div(g, 63)) { revert(0, 0) }
                        // Log data (index, to, amount) reuses the call data: `to` and `amount`
                        // are at ptr + 0x24 and ptr + 0x44, the index goes in the word before.
                        mstore(add(ptr, 0x04), shr(5, sub(p, payouts.offset)))
                        log2(add(ptr, 0x04), 0x60, failedTopic, batchId)
                        mstore(add(ptr, 0x04), caller())
                        paidTotal := sub(paidTotal, amount)
                        failedCount := add(failedCount, 1)
                    }
                }
            }
        }
        // Amounts are < 2**96 each, so paidTotal cannot overflow; failedCount <= payouts.length.
        unchecked {
            emit BatchExecuted(msg.sender, batchId, token, payouts.length - failedCount, paidTotal, failedCount);
        }
    }

    /// @notice Pays every payout in `payouts` in ether; `msg.value` must equal their sum.
    /// @dev Each send forwards only the 2,300 gas stipend (enough to accept ether and log, not
    ///      enough to do anything else), so a recipient cannot grief the batch. The value of failed
    ///      sends is refunded to the caller at the end; the contract keeps nothing.
    function payNative(uint256 batchId, bytes32[] calldata payouts) external payable {
        uint256 expected;
        assembly ("memory-safe") {
            let p := payouts.offset
            let end := add(p, shl(5, payouts.length))
            for {} lt(p, end) { p := add(p, 0x20) } { expected := add(expected, shr(160, calldataload(p))) }
        }
        if (expected != msg.value) revert NativeValueMismatch(expected, msg.value);
        _markExecuted(batchId);

        bytes32 paidTopic = NativePaid.selector;
        bytes32 failedTopic = TransferFailed.selector;
        uint256 paidTotal;
        uint256 failedCount;
        assembly ("memory-safe") {
            let logPtr := mload(0x40)
            let p := payouts.offset
            let end := add(p, shl(5, payouts.length))
            for { let i := 0 } lt(p, end) { p := add(p, 0x20) i := add(i, 1) } {
                let word := calldataload(p)
                let to := and(word, 0xffffffffffffffffffffffffffffffffffffffff)
                let amount := shr(160, word)
                // Gas argument 0: the callee gets exactly the 2,300 stipend that comes with value
                // (and nothing for a zero-value send), independent of the gas left in this frame.
                switch call(0, to, amount, 0, 0, 0, 0)
                case 0 {
                    mstore(logPtr, i)
                    mstore(add(logPtr, 0x20), to)
                    mstore(add(logPtr, 0x40), amount)
                    log2(logPtr, 0x60, failedTopic, batchId)
                    failedCount := add(failedCount, 1)
                }
                default {
                    mstore(logPtr, amount)
                    log3(logPtr, 0x20, paidTopic, batchId, to)
                    paidTotal := add(paidTotal, amount)
                }
            }
        }
        uint256 refund;
        unchecked {
            refund = expected - paidTotal;
            emit BatchExecuted(msg.sender, batchId, address(0), payouts.length - failedCount, paidTotal, failedCount);
        }
        if (refund != 0) {
            (bool ok,) = payable(msg.sender).call{value: refund}("");
            if (!ok) revert RefundFailed(msg.sender, refund);
        }
    }

    /// @dev The on-chain "never pay twice" guard; runs before any transfer (reentrancy).
    function _markExecuted(uint256 batchId) private {
        mapping(uint256 => bool) storage done = executed[msg.sender];
        if (done[batchId]) revert BatchAlreadyExecuted(batchId);
        done[batchId] = true;
    }
}
