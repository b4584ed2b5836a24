#!/usr/bin/env bash
# Regenerate each image's hash-locked requirements (charts/images/<image>.lock.txt) from its
# <image>.requirements.txt, at the versions constraints.txt pins. Needs uv (pip install uv).
# The Dockerfiles install them with `pip install --require-hashes --no-deps`.
set -euo pipefail
cd "$(dirname "$0")/../charts/images"
for image in gateway drift mlflow predictor cli; do
  uv pip compile --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    -c ../../constraints.txt "$image.requirements.txt" -o "$image.lock.txt"
  echo "charts/images/$image.lock.txt" >&2
done
