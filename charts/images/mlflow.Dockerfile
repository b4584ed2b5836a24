# syntax=docker/dockerfile:1
# The MLflow tracking server (charts/mlflow.py): artifacts on S3 (boto3) or a volume, backend on PostgreSQL (psycopg) or SQLite.
# Built by `mlops images build` from the repository root (context "."), which passes VERSION and REVISION;
# by hand: docker buildx build -f charts/images/mlflow.Dockerfile --build-arg VERSION=0.1.0 .
# Only what this image runs goes in: charts/images/mlflow.requirements.txt, installed from its hash-locked
# resolution charts/images/mlflow.lock.txt (`--require-hashes`: a changed file on the index fails the build;
# regenerate with scripts/lock-images.sh; tests/test_image_envs.py imports the entrypoint from the same set).
# The cluster runs it as uid 10001 with a read-only root filesystem; only /tmp (an emptyDir) is writable,
# so bytecode is compiled at build time and nothing is written next to the code at run time.
# Base: python:3.11-slim (Debian trixie, Python 3.11.15), pinned to its multi-platform index digest as
# published in docker-library/repo-info, repos/python/remote/3.11-slim.md (build of 2026-08-05).

FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS build
WORKDIR /build
COPY charts/images/mlflow.lock.txt ./
# pip is the venv's (PATH), so hadolint checks this install line like any other.
ENV PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-deps -r mlflow.lock.txt

FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff
ARG VERSION=0.0.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mlops-mlflow" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
USER 10001:10001
WORKDIR /tmp
EXPOSE 5000
# charts/mlflow.py passes the backend store and artifact root; this one documents the contract.
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
