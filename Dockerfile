# syntax=docker/dockerfile:1
# Criptoren: one image for the API (`criptoren serve`), the workers (`criptoren worker`) and the
# one-shot jobs (`criptoren migrate`, `criptoren backup`, `criptoren restore FILE`).
# Build: docker build -t criptoren .   (docker-compose.yml does it for you)

# ---- build: a virtualenv with the dependencies and the project (editable: it runs from /app, where
# the Alembic migrations are)
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY gql_api ./gql_api
COPY workers ./workers
RUN pip install -e . && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

# ---- runtime: slim, non-root, with PostgreSQL 15's client tools for `criptoren backup`/`restore`
FROM python:3.11-slim-bookworm AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin criptoren \
    && mkdir -p /backups \
    && chown criptoren:criptoren /backups
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
COPY alembic.ini /app/
COPY alembic /app/alembic
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    CRIPTOREN_ENV=prod \
    LOG_FORMAT=json \
    BACKUP_DIR=/backups \
    CRIPTOREN_DATA_DIR=/home/criptoren/data
USER criptoren
EXPOSE 8000 9100
# The API by default; compose runs the worker and the migrations from the same image.
CMD ["criptoren", "serve"]
