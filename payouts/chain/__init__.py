"""Everything that talks to the chain: RPC client, contract codec, fees, signer, submitter."""
