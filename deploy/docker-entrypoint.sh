#!/bin/sh
# The app image's entrypoint (Dockerfile). The deploy step's `payouts chain deploy --env-file`
# writes the settings of what it deployed (PAYOUTS_BATCHER_ADDRESS, PAYOUTS_CLAIMS_ADDRESS,
# PAYOUTS_ASSETS) into the shared state volume; every app container exports them before its
# command runs, and so does the deploy step itself, so that a second run finds its own
# deployment.
set -e

chain_env=/var/lib/payouts/chain.env
if [ -f "$chain_env" ]; then
    set -a
    . "$chain_env"
    set +a
fi

# prometheus_client's multiprocess mode needs its directory to exist, and empty: files a
# previous run of this container left would add that run's counts to this one's.
if [ -n "$PROMETHEUS_MULTIPROC_DIR" ]; then
    rm -rf "$PROMETHEUS_MULTIPROC_DIR"
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi

exec "$@"
