"""Stage 3, settlement: pending payouts sealed into batches the hot wallet can pay, sized by
policy (fees, gas, funds, recent outcomes), each with the depth it needs to be final."""
