# syntax=docker/dockerfile:1
# Image for the KServe predictor serving a SentimentClassifier directory from /mnt/models.
# Build from the repository root:  docker build -f charts/images/predictor.Dockerfile -t ghcr.io/mlops/predictor:0.1.0 .
# The cluster runs it as uid 10001 with a read-only root filesystem; only /tmp (an emptyDir) is writable.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY mlops_cli ./mlops_cli
COPY models ./models
COPY charts ./charts
# CPU-only torch keeps the image about 2 GB smaller than the default CUDA wheels.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --extra-index-url https://download.pytorch.org/whl/cpu -c constraints.txt .

FROM python:3.11-slim
COPY --from=build /opt/venv /opt/venv
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /tmp app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# The contract entrypoint; the cluster manifests pass the real arguments.
CMD ["python", "-m", "models.predictor", "--model-dir", "/mnt/models", "--model-name", "sentiment", "--version", "0", "--http-port", "8080"]
