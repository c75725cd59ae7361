"""The key that signs vouchers is the one the escrow ``payouts chain deploy`` makes pays."""

from __future__ import annotations

from pathlib import Path

from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from pydantic import SecretStr

import devstack
from config.settings import Settings
from payouts.ops.deploy import chain_deploy
from payouts.runtime import Runtime


def test_chain_deploy_makes_the_escrow_pay_the_configured_claim_signer(
    anvil: devstack.Anvil, tmp_path: Path
) -> None:
    claim_key = Account.create()
    rt = Runtime(
        Settings(
            rpc_url=anvil.url,
            state_dir=tmp_path,
            signer_key=SecretStr(devstack.DEV_KEYS[1]),
            claims_signer_key=SecretStr(claim_key.key.hex()),
        )
    )

    escrow = chain_deploy(rt, mint=10**6).claims_address

    word = rt.chain.call(escrow, "0x" + keccak(text="signer()")[:4].hex())
    assert to_checksum_address("0x" + word[-40:]) == claim_key.address == rt.claim_signer.address
    assert rt.claim_signer.address != rt.signer.address
