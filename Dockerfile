# The ratesync app image: `python worker.py` by default; docker-compose.yml also runs
# `python starter.py db upgrade` from it. Configuration comes only from the environment
# (settings.py); nothing secret is baked in (.dockerignore keeps `.env` out).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, read from pyproject's [project].dependencies, so a code change does not
# reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install -r requirements.txt \
    && rm requirements.txt

# The project itself. The scripts run from /app (the repo root is the import root, as in
# development), which also keeps alembic's migrations/ next to storage/.
COPY . .
RUN pip install . \
    && rm -rf build ./*.egg-info \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/ratesync ratesync \
    && mkdir -p /app/.data \
    && chown ratesync:ratesync /app/.data

USER ratesync

CMD ["python", "worker.py"]
