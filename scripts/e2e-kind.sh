#!/usr/bin/env bash
# End to end on a throwaway kind cluster (any machine with Docker and kind; ci.yml's e2e-kind job):
# build our images as kind.local/..., create the cluster, load the images, `mlops up`, train and register
# two tiny versions, deploy, predict, canary 20%, promote, roll back, `mlops down --purge`, and check that
# nothing is left Terminating. The cluster is deleted on exit, failed or not (E2E_KEEP=1 keeps it).
#
# Exit codes: 0 passed, 1 a step failed (named on stderr), 2 a tool is missing or Docker does not answer.
set -euo pipefail

CLUSTER="${E2E_CLUSTER:-mlops-e2e}"
TAG="${E2E_TAG:-e2e}"
MLOPS="${MLOPS:-.venv/bin/mlops}"
IMAGES=(gateway drift predictor mlflow)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mlops-e2e.XXXXXX")"
export KUBECONFIG="$WORK/kubeconfig"
export MLOPS_IMAGES__REGISTRY=kind.local MLOPS_IMAGES__TAG="$TAG"
export MLOPS_PROJECT__STATE_DIR="$WORK/state"
STEP="preflight"
FORWARD_PID=""

fail() { echo "e2e-kind: $*" >&2; exit "${2:-1}"; }
need() { command -v "$1" >/dev/null 2>&1 || fail "$1 is not installed: $2" 2; }

need docker "install Docker (https://docs.docker.com/engine/install/)"
need kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/)"
[ -x "$MLOPS" ] || command -v "$MLOPS" >/dev/null 2>&1 || fail "$MLOPS not found: run make setup first" 2
docker info >/dev/null 2>&1 || fail "the Docker daemon does not answer (docker info failed): start it" 2

cleanup() {
  local rc=$?
  [ -n "$FORWARD_PID" ] && kill "$FORWARD_PID" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then echo "e2e-kind: FAILED at step '$STEP' (exit $rc)" >&2; fi
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    echo "e2e-kind: keeping cluster $CLUSTER (KUBECONFIG=$KUBECONFIG)" >&2
  elif [ "$CREATED" = 1 ]; then
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || echo "e2e-kind: could not delete cluster $CLUSTER" >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
CREATED=0
trap cleanup EXIT

step() { STEP="$1"; shift; echo "==> $STEP" >&2; "$@"; }

step "build images" "$MLOPS" images build --tag "$TAG"
step "create cluster" kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 180s
CREATED=1
for image in "${IMAGES[@]}"; do
  step "load $image" kind load docker-image "kind.local/mlops-$image:$TAG" --name "$CLUSTER"
done
step "up" "$MLOPS" up --target kubernetes --yes

# The registry lives in the cluster: reach its MLflow through the API server for train/register.
STEP="reach mlflow"
kubectl -n mlops port-forward svc/mlflow 15000:5000 >/dev/null 2>&1 &
FORWARD_PID=$!
export MLOPS_REGISTRY__TRACKING_URI=http://127.0.0.1:15000
for _ in $(seq 30); do curl -fsS "$MLOPS_REGISTRY__TRACKING_URI/health" >/dev/null 2>&1 && break; sleep 2; done

step "data" "$MLOPS" data prepare
step "train v1" "$MLOPS" train --log --max-steps 20 --seed 1
step "register v1" "$MLOPS" register --alias champion
step "deploy v1" "$MLOPS" deploy --target kubernetes --alias champion
step "predict v1" "$MLOPS" predict --target kubernetes "this movie was great"
step "train v2" "$MLOPS" train --log --max-steps 20 --seed 2
step "register v2" "$MLOPS" register
step "canary v2" "$MLOPS" deploy --target kubernetes --version 2 --canary 20
step "predict during canary" "$MLOPS" predict --target kubernetes "awful side effects"
step "promote" "$MLOPS" deploy --target kubernetes --promote
step "rollback" "$MLOPS" deploy --target kubernetes --rollback
step "predict after rollback" "$MLOPS" predict --target kubernetes "it worked for me"
step "down --purge" "$MLOPS" down --target kubernetes --purge --yes

STEP="nothing left Terminating"
left="$(kubectl get namespaces,pods,persistentvolumeclaims --all-namespaces --no-headers 2>/dev/null | grep -w Terminating || true)"
[ -z "$left" ] || fail "still Terminating after down --purge:
$left"
echo "e2e-kind: passed" >&2
