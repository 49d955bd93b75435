# syntax=docker/dockerfile:1
# Criptoren: one image for the API (`criptoren serve`), the workers (`criptoren worker`) and the
# one-shot jobs (`criptoren migrate`, `criptoren backup`, `criptoren restore FILE`).
# Build: docker build -t criptoren .   (docker-compose.yml does it for you)

# ---- requirements: the build requirements and the dependencies, as pyproject.toml lists them. The
# build stage copies this list, not pyproject.toml, before installing: a change elsewhere in
# pyproject.toml (tools' settings, the dev extra) or in the code reinstalls nothing.
FROM python:3.11-slim-bookworm AS requirements
COPY pyproject.toml /
RUN python -c "import tomllib; p = tomllib.load(open('/pyproject.toml', 'rb')); \
print('\n'.join(p['build-system']['requires'] + p['project']['dependencies']))" > /requirements.txt

# ---- build: a virtualenv with the dependencies and the project installed in editable mode (it runs
# from /app, where the Alembic migrations are). The package directories are empty stubs here (the
# editable install maps domain, gql_api and workers to /app; README.md is only the long description):
# the runtime stage copies the sources, so a change to the code reuses every layer of this stage.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt
COPY pyproject.toml ./
RUN mkdir domain gql_api workers && touch domain/__init__.py gql_api/__init__.py workers/__init__.py README.md \
    && pip install --no-deps --no-build-isolation -e . \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

# ---- runtime: slim, non-root, with PostgreSQL 15's client tools for `criptoren backup`/`restore`
FROM python:3.11-slim-bookworm AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin criptoren \
    && mkdir -p /backups \
    && chown criptoren:criptoren /backups
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The sources last, the most often changed last.
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY workers ./workers
COPY domain ./domain
COPY gql_api ./gql_api
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
