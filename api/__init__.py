"""The read API over the mirror (`starter.py api`): FastAPI, Postgres only, never upstream."""
