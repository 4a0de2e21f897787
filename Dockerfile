# The ratesync app image: `python worker.py` by default; docker-compose.yml also runs
# `python starter.py db upgrade` from it. Configuration comes only from the environment
# (settings.py) and compose secrets; nothing secret is baked in (.dockerignore keeps `.env` out).
# Only the runtime dependencies, exactly as locked (with hashes) in requirements/runtime.txt:
# no sandbox, benchmark or test package lands in this image.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip install --no-deps --require-hashes -r requirements/runtime.txt

# The project itself (its dependencies are all installed above). The scripts run from /app (the
# repo root is the import root, as in development), which also keeps alembic's migrations/ next
# to storage/.
COPY . .
RUN pip install --no-deps --no-build-isolation . \
    && rm -rf build ./*.egg-info \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/ratesync ratesync \
    && mkdir -p /app/.data \
    && chown ratesync:ratesync /app/.data \
    && chmod 0700 /app/.data

USER ratesync

CMD ["python", "worker.py"]
