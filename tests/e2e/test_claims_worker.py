"""Push and claim side by side with a real Celery worker and beat (as the app role), on a real
anvil mining a block a second: beat settles some creators by batch and makes the others
claimable, tops the escrow up from the hot wallet and, past the sweep age, submits their
vouchers itself; the reconciler finalizes both; the ledger ends equal to the chain, escrow
included."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

import devstack
from devstack import processes
from payouts.runtime import Runtime
from payouts.tracking import handlers as tracking
from tests.chainkit import scalar, seed, token_balance
from tests.conftest import chain_settings, settings_env
from tests.e2e.conftest import as_app_role
from tests.e2e.test_worker_pipeline import mining_anvil as mining_anvil
from tests.waiting import wait_until


def test_beat_pushes_some_creators_and_sweeps_the_claims_of_the_others(
    db_url: str, redis_url: str, mining_anvil: devstack.Anvil, state_dir: Path
) -> None:
    deployment = devstack.deploy_dev_contracts(
        mining_anvil.url, devstack.DEV_KEYS[0], devstack.DEV_KEYS[1], mint=10**15
    )
    settings = chain_settings(
        db_url,
        mining_anvil.url,
        deployment,
        redis_url=redis_url,
        rollup_window_seconds=2,
        settle_interval_seconds=1,
        reconcile_interval_seconds=1,
        claims_sweep_after_seconds=2,
        state_dir=str(state_dir),
    )
    rt = Runtime(settings)
    recipients = seed(rt, creators=8, per_creator=2)
    claiming = sorted(recipients)[:5]
    with rt.uow() as session:
        session.execute(
            text("UPDATE creators SET settle_mode = 'claim' WHERE external_id = ANY(:c)"),
            {"c": claiming},
        )
        session.commit()
    processes.purge_queues(settings, redis_url)
    assert settings.database_url is not None
    with as_app_role(settings.database_url) as app_url:
        env = {**settings_env(settings), "PAYOUTS_DATABASE_URL": app_url}
        worker = processes.start_celery("worker", env, state_dir / "claims")
        beat = processes.start_celery("beat", env, state_dir / "claims")
        try:
            wait_until(
                lambda: scalar(rt, "SELECT count(*) FROM credit_states WHERE state <> 'paid'") == 0,
                timeout=150,
                what="every credit paid, by batch or by claim",
            )
        finally:
            processes.stop(beat)
            processes.stop(worker)

    by_claim = scalar(
        rt, "SELECT count(*) FROM payouts WHERE settled_by = 'claim' AND state = 'finalized'"
    )
    with rt.uow() as session:
        how = session.execute(
            text(
                "SELECT c.external_id, c.settle_mode, p.settled_by, p.state FROM payouts p"
                " JOIN creators c ON c.id = p.creator_id ORDER BY c.external_id"
            )
        ).all()
    assert by_claim == len(claiming), how
    assert scalar(rt, "SELECT count(*) FROM batches WHERE state = 'finalized'") >= 1
    with rt.uow() as session:
        paid = dict(
            session.execute(
                text(
                    "SELECT recipient, sum(amount) FROM payouts WHERE state = 'finalized'"
                    " GROUP BY recipient"
                )
            ).all()
        )
    assert set(paid) == set(recipients.values())
    for address, amount in paid.items():
        assert token_balance(rt, deployment.token_address, address) == int(amount)
    # The swept claims went out from the hot wallet's lane, after its top-up.
    assert scalar(rt, "SELECT count(*) FROM wallet_transactions WHERE purpose = 'topup'") >= 1
    assert scalar(rt, "SELECT count(*) FROM wallet_transactions WHERE purpose = 'claim'") >= 1
    checked = tracking.check(rt)
    assert checked.ok, [r for r in checked.results if not r.ok]
