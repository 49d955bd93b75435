FROM python:3.11-slim
WORKDIR /app
RUN useradd --create-home --uid 10001 criptoren
COPY pyproject.toml README.md alembic.ini ./
COPY domain ./domain
COPY gql_api ./gql_api
COPY workers ./workers
COPY alembic ./alembic
RUN pip install --no-cache-dir .
USER criptoren
ENV HOST=0.0.0.0 PORT=8000
EXPOSE 8000
CMD ["criptoren", "up"]
