# The app image for api, worker, beat, migrate and deploy (see docker-compose.yml): the Python
# package and the compiled contract artifacts. No node/npm: contracts/artifacts/*.json and the
# ops page's vendored assets are committed, built.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY config ./config
COPY payouts ./payouts
COPY workers ./workers
COPY migrations ./migrations
COPY alembic.ini ./
COPY contracts/artifacts ./contracts/artifacts
COPY deploy/docker-entrypoint.sh /usr/local/bin/payouts-entrypoint
# Editable, so that paths the code derives from its own location (config.settings.REPO_ROOT,
# payouts.chain.artifacts.ARTIFACTS_DIR) point into /app and not into site-packages.
# /var/lib/payouts is the state volume of docker-compose.yml (the deploy step's settings, beat's
# schedule): a named volume starts with the ownership of the image's directory, so it is the
# app user's to write.
RUN pip install --no-deps -e . \
    && useradd --system --create-home --home-dir /home/payouts payouts \
    && mkdir -p /app/.state /var/lib/payouts \
    && chown payouts:payouts /app/.state /var/lib/payouts

USER payouts
ENTRYPOINT ["payouts-entrypoint"]
CMD ["payouts", "--help"]
