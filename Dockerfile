# The app image for api, worker, beat and migrate (see docker-compose.yml): the Python package and the
# compiled contract artifacts. No node/npm: contracts/artifacts/*.json are committed, compiled.
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
# Editable, so that paths the code derives from its own location (config.settings.REPO_ROOT,
# payouts.chain.artifacts.ARTIFACTS_DIR) point into /app and not into site-packages.
RUN pip install --no-deps -e . \
    && useradd --system --create-home --home-dir /home/payouts payouts \
    && mkdir -p /app/.state \
    && chown payouts:payouts /app/.state

USER payouts
CMD ["payouts", "--help"]
