# syntax=docker/dockerfile:1
# The mlops CLI with the training stack: what the closed loop's CronJob runs (`mlops loop --once --target
# kubernetes`, charts/loop_job.py). Built by `mlops images build` when [loop].schedule is set.
# Built from the repository root (context "."), which passes VERSION and REVISION;
# by hand: docker buildx build -f charts/images/cli.Dockerfile --build-arg VERSION=0.1.0 .
# Only what the CLI runs goes in: charts/images/cli.requirements.txt, installed from its hash-locked
# resolution charts/images/cli.lock.txt (`--require-hashes`: a changed file on the index fails the build;
# regenerate with scripts/lock-images.sh; tests/test_image_envs.py imports the entrypoint from the same set),
# plus torch from PyTorch's CPU index at the version constraints.txt pins (that index is not on PyPI, so
# torch is version-pinned here, not hash-locked; the default CUDA wheels add several GB).
# The cluster runs it as uid 10001 with a read-only root filesystem; only /tmp (an emptyDir) is writable,
# so bytecode is compiled at build time and nothing is written next to the code at run time.
# Base: python:3.11-slim (Debian trixie, Python 3.11.15), pinned to its multi-platform index digest as
# published in docker-library/repo-info, repos/python/remote/3.11-slim.md (build of 2026-08-05).

FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /build
COPY charts/images/cli.lock.txt ./
# pip is the venv's (PATH), so hadolint checks this install line like any other.
ENV PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-deps -r cli.lock.txt \
 && pip install --no-cache-dir --disable-pip-version-check --no-deps --index-url "${TORCH_INDEX_URL}" torch==2.13.0
COPY models /app/models
COPY mlops_cli /app/mlops_cli
COPY charts /app/charts
COPY stacks /app/stacks
RUN python -m compileall -q /app

FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff
ARG VERSION=0.0.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mlops-cli" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
USER 10001:10001
WORKDIR /tmp
# The CronJob (charts/loop_job.py) passes the real command; this one documents the contract.
CMD ["python", "-m", "mlops_cli", "loop", "--once", "--target", "kubernetes"]
