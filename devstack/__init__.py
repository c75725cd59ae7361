"""Dev tooling: real local services for the demo, the tests and the benchmarks.

PostgreSQL, Redis, anvil and the dev contracts, plus spawning the Celery and API processes
and the demo itself. The demo and the test suite run against real servers, never fakes,
because the bugs that matter here (row locks, nonces, reorgs, redelivered tasks) only show up
against the real thing. Where a server is configured (``PAYOUTS_DATABASE_URL``,
``PAYOUTS_REDIS_URL``) it is used as is; where it is not, an embedded one is started under
``settings.state_dir`` so that a fresh checkout works on a machine with neither installed.

Nothing in ``payouts`` imports this package (an import-linter contract says so): the runtime
reaches the embedded servers only through the backend named by ``PAYOUTS_EMBEDDED_SERVERS``
(``devstack.embedded``), and the CLI's ``demo`` command calls ``devstack.demo``.
"""

from devstack.anvil import Anvil, anvil_binary, rpc_chain_id
from devstack.contracts import (
    DEV_ADDRESSES,
    DEV_KEYS,
    DEV_MNEMONIC,
    DevDeployment,
    deploy_dev_contracts,
)
from devstack.postgres import fresh_database, postgres_url, stop_embedded_postgres
from devstack.redis_server import redis_url, stop_embedded_redis
from devstack.spawning import LOOPBACK, DevStackError, free_port

__all__ = [
    "DEV_ADDRESSES",
    "DEV_KEYS",
    "DEV_MNEMONIC",
    "LOOPBACK",
    "Anvil",
    "DevDeployment",
    "DevStackError",
    "anvil_binary",
    "deploy_dev_contracts",
    "free_port",
    "fresh_database",
    "postgres_url",
    "redis_url",
    "rpc_chain_id",
    "stop_embedded_postgres",
    "stop_embedded_redis",
]
