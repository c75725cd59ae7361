// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title PayoutClaims
/// @notice An escrow of the platform's ERC-20 tokens that pays creators on cumulative vouchers: a
///         one-way payment channel from the platform to every creator, with no per-creator deposit.
/// @dev A voucher is an EIP-712 signature by the current `signer` over (token, recipient,
///      cumulative): everything `recipient` has ever been owed in `token`. A claim pays
///      `cumulative - claimed[recipient][token]` and records `cumulative`, so a voucher can pay
///      at most once and an older one pays nothing. Anyone may submit a voucher (the recipient is
///      fixed by the signature, not by the sender), paying the gas.
///
///      Tokens arrive by plain transfer. There is no withdraw: the contract cannot tell what is
///      still claimable from what is surplus, so an owner withdrawal could take cents the creators'
///      vouchers already promise. Surplus leaves the way every payment does, by a voucher (to the
///      platform's own address), which the ledger then records like any other claim.
///
///      The ECDSA checks are OpenZeppelin's (`ECDSA.tryRecover`, 5.x) written out: a 65-byte
///      signature, s in the lower half of the curve order (no malleable twin), v in {27, 28}, and
///      a recovered address that is not address(0) (what ecrecover returns for garbage).
contract PayoutClaims {
    /// @notice The voucher's cumulative is not above what `recipient` already claimed: it is stale
    ///         or was already paid. Reverting (rather than a no-op) lets a relayer's gas estimate
    ///         refuse it before anything is sent, and makes "paid nothing" unmistakable on chain.
    error NothingToClaim(address recipient, address token, uint256 cumulative, uint256 claimed);
    /// @notice The signature is malformed: not 65 bytes, a high s, a v other than 27 or 28, or one
    ///         from which no address can be recovered.
    error InvalidSignature();
    /// @notice A well-formed signature by someone else than the current signer: a forged voucher,
    ///         one of a rotated-out signer, or one signed for another chain or contract.
    error WrongSigner(address recovered, address signer);
    /// @notice The escrow holds less of `token` than the claim pays.
    error InsufficientEscrow(address token, uint256 available, uint256 needed);
    /// @notice The token refused the transfer for another reason (a blocked recipient, say).
    error TransferFailed(address token, address recipient, uint256 amount);
    /// @notice `token` has no code, so a transfer would "succeed" without moving anything.
    error NotAContract(address token);
    /// @notice Only the owner may rotate the signer.
    error NotOwner(address caller);
    /// @notice An escrow nobody could ever rotate the signer of.
    error ZeroOwner();
    /// @notice `claimMany` was given lists of different lengths.
    error LengthMismatch();

    /// @notice One per paid claim, for the reconciler: `cumulative` is the new record, `paid` what
    ///         this claim moved (the token's own Transfer log carries the same amount).
    event Claimed(address indexed recipient, address indexed token, uint256 cumulative, uint256 paid);
    /// @notice The claim signer changed; vouchers of `previous` stop working. Emitted at
    ///         construction too (from address(0)), so the logs alone tell who signs.
    event SignerChanged(address indexed previous, address indexed next);

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("PayoutClaims");
    bytes32 private constant VERSION_HASH = keccak256("1");
    /// @notice The EIP-712 type of a voucher.
    bytes32 public constant VOUCHER_TYPEHASH =
        keccak256("Voucher(address token,address recipient,uint256 cumulative)");
    /// @dev secp256k1n / 2: a larger s has a twin (n - s) that recovers the same address.
    uint256 private constant HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// @dev The domain separator is computed once; it is rebuilt only on another chain id (after a
    ///      fork), so a voucher for one side of a fork is refused on the other.
    uint256 private immutable _deployedChainId;
    bytes32 private immutable _deployedDomainSeparator;

    /// @notice May rotate the signer; nothing else.
    address public immutable owner;
    /// @notice Whose vouchers pay. address(0) pauses every claim (no signature recovers to it).
    address public signer;
    /// @notice The cumulative amount of `token` paid to `recipient` so far.
    mapping(address recipient => mapping(address token => uint256 cumulative)) public claimed;

    constructor(address owner_, address signer_) {
        if (owner_ == address(0)) revert ZeroOwner();
        owner = owner_;
        signer = signer_;
        _deployedChainId = block.chainid;
        _deployedDomainSeparator = _buildDomainSeparator();
        emit SignerChanged(address(0), signer_);
    }

    /// @notice Pays `recipient` what the voucher (token, recipient, cumulative) adds to what it
    ///         already claimed. Reverts, paying nothing, on a stale or repeated voucher, a bad
    ///         signature, or an escrow that cannot pay the difference in full.
    function claim(address token, address recipient, uint256 cumulative, bytes calldata signature) external {
        mapping(address => uint256) storage record = claimed[recipient];
        uint256 previous = record[token];
        // Before the signature: a stale voucher (a relayer's race) costs as little as possible.
        if (cumulative <= previous) revert NothingToClaim(recipient, token, cumulative, previous);
        address recovered = _recover(_digest(token, recipient, cumulative), signature);
        address current = signer;
        if (recovered != current) revert WrongSigner(recovered, current);
        // Recorded before the transfer, so a token that calls back finds the voucher spent.
        record[token] = cumulative;
        uint256 paid;
        unchecked {
            paid = cumulative - previous;
        }
        _transfer(token, recipient, paid);
        emit Claimed(recipient, token, cumulative, paid);
    }

    /// @notice Many vouchers of one token in one transaction (the platform's sweep of what sat
    ///         unclaimed): each pays its recipient exactly as `claim` would. A voucher already
    ///         paid is skipped rather than reverted, so a creator who claimed in the meantime
    ///         does not fail the others; a bad signature or a short escrow reverts them all.
    function claimMany(
        address token,
        address[] calldata recipients,
        uint256[] calldata cumulatives,
        bytes[] calldata signatures
    ) external {
        uint256 n = recipients.length;
        if (cumulatives.length != n || signatures.length != n) revert LengthMismatch();
        address current = signer;
        for (uint256 i; i < n; ++i) {
            address recipient = recipients[i];
            uint256 cumulative = cumulatives[i];
            uint256 previous = claimed[recipient][token];
            if (cumulative > previous) _pay(token, recipient, cumulative, previous, signatures[i], current);
        }
    }

    /// @dev What `claim` does after its stale check, for `claimMany`; written out again in
    ///      `claim` because the call into a shared function costs every single claim ~170 gas.
    function _pay(
        address token,
        address recipient,
        uint256 cumulative,
        uint256 previous,
        bytes calldata signature,
        address current
    ) private {
        address recovered = _recover(_digest(token, recipient, cumulative), signature);
        if (recovered != current) revert WrongSigner(recovered, current);
        claimed[recipient][token] = cumulative;
        uint256 paid;
        unchecked {
            paid = cumulative - previous;
        }
        _transfer(token, recipient, paid);
        emit Claimed(recipient, token, cumulative, paid);
    }

    /// @notice Vouchers signed by the previous signer stop working at once; the ledger issues fresh
    ///         ones for the same cumulative amounts, which pay only what was not yet claimed.
    function setSigner(address next) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        emit SignerChanged(signer, next);
        signer = next;
    }

    /// @notice The EIP-712 domain separator of this contract on this chain.
    function domainSeparator() public view returns (bytes32) {
        return block.chainid == _deployedChainId ? _deployedDomainSeparator : _buildDomainSeparator();
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// @dev keccak256("\x19\x01" || domainSeparator || hashStruct(voucher)), in scratch memory past
    ///      the free memory pointer (left where it was: nothing here outlives the hash).
    function _digest(address token, address recipient, uint256 cumulative) private view returns (bytes32 digest) {
        bytes32 domain = domainSeparator();
        bytes32 typehash = VOUCHER_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            mstore(add(ptr, 0x20), token)
            mstore(add(ptr, 0x40), recipient)
            mstore(add(ptr, 0x60), cumulative)
            let structHash := keccak256(ptr, 0x80)
            mstore(ptr, shl(240, 0x1901))
            mstore(add(ptr, 0x02), domain)
            mstore(add(ptr, 0x22), structHash)
            digest := keccak256(ptr, 0x42)
        }
    }

    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address recovered) {
        if (signature.length != 65) revert InvalidSignature();
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := calldataload(signature.offset)
            s := calldataload(add(signature.offset, 0x20))
            v := byte(0, calldataload(add(signature.offset, 0x40)))
        }
        if (uint256(s) > HALF_ORDER || (v != 27 && v != 28)) revert InvalidSignature();
        recovered = ecrecover(digest, v, r, s);
        if (recovered == address(0)) revert InvalidSignature();
    }

    /// @dev token.transfer(to, amount), accepting `true` or (from a contract) no return data, as
    ///      USDT-style tokens return nothing. Anything else reverts the claim, record included.
    function _transfer(address token, address to, uint256 amount) private {
        bool ok;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, shl(224, 0xa9059cbb)) // transfer(address,uint256)
            mstore(add(ptr, 0x04), to)
            mstore(add(ptr, 0x24), amount)
            ok := call(gas(), token, 0, ptr, 0x44, 0, 0x20)
            switch returndatasize()
            case 0 { ok := and(ok, gt(extcodesize(token), 0)) }
            default { ok := and(ok, and(gt(returndatasize(), 0x1f), eq(mload(0), 1))) }
        }
        if (!ok) _refused(token, to, amount);
    }

    /// @dev Says why a transfer failed; off the happy path, so its extra calls cost a claim nothing.
    function _refused(address token, address to, uint256 amount) private view {
        if (token.code.length == 0) revert NotAContract(token);
        (bool read, bytes memory data) = token.staticcall(abi.encodeWithSelector(0x70a08231, address(this)));
        if (read && data.length >= 32) {
            uint256 available = abi.decode(data, (uint256));
            if (available < amount) revert InsufficientEscrow(token, available, amount);
        }
        revert TransferFailed(token, to, amount);
    }
}
