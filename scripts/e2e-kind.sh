#!/usr/bin/env bash
# End to end on a throwaway kind cluster (any machine with Docker and kind; ci.yml's e2e-kind job):
# build our images as kind.local/..., create the cluster on a pinned node image, load the images,
# `mlops up` with the upstream manifests checked against mlops.lock and the small `e2e` resource profile,
# reach the public edge through a port-forward to the Envoy proxy ([kubernetes].ingress_address), train
# and register two tiny versions, deploy, predict, then the canary gate twice: version 2 observed and
# promoted (`--observe --promote-if-healthy`, with probe traffic), then a deliberately failing canary
# (its predictor answers 500 for 30% of requests: [serving].fault_error_share) that the gate must roll
# back (exit 1); `mlops down --purge`, and nothing left Terminating. On failure every pod's logs and the
# events go to $E2E_ARTIFACTS. The cluster is deleted on exit, failed or not (E2E_KEEP=1 keeps it).
#
# Exit codes: 0 passed, 1 a step failed (named on stderr; a changed upstream manifest fails the lock step),
# 2 a tool is missing or Docker does not answer.
set -euo pipefail

CLUSTER="${E2E_CLUSTER:-mlops-e2e}"
TAG="${E2E_TAG:-e2e}"
MLOPS="${MLOPS:-.venv/bin/mlops}"
IMAGES=(gateway drift predictor mlflow)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mlops-e2e.XXXXXX")"
export KUBECONFIG="$WORK/kubeconfig"
export MLOPS_IMAGES__REGISTRY=kind.local MLOPS_IMAGES__TAG="$TAG"
export MLOPS_PROJECT__STATE_DIR="$WORK/state"
# Kubernetes 1.35 (KServe v0.20 supports 1.32-1.35; our objects are validated for 1.34 and 1.35): the node
# image kind v0.32.0-alpha ships, by digest (kubernetes-sigs/kind pkg/apis/config/defaults/image.go).
NODE_IMAGE="${E2E_NODE_IMAGE:-kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f}"
ARTIFACTS="${E2E_ARTIFACTS:-$WORK/artifacts}"
# Fits a 4-vCPU runner (charts/objects.py E2E_RESOURCES); the edge is reached through a port-forward.
export MLOPS_KUBERNETES__RESOURCE_PROFILE=e2e MLOPS_KUBERNETES__INGRESS_ADDRESS=127.0.0.1:18443
export MLOPS_CANARY__PROMETHEUS_URL=http://127.0.0.1:19090 MLOPS_CANARY__INTERVAL_S=15 MLOPS_CANARY__PROBE_RPS=4
STEP="preflight"
FORWARD_PIDS=()

fail() { echo "e2e-kind: $*" >&2; exit "${2:-1}"; }
need() { command -v "$1" >/dev/null 2>&1 || fail "$1 is not installed: $2" 2; }

need docker "install Docker (https://docs.docker.com/engine/install/)"
need kind "install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/)"
[ -x "$MLOPS" ] || command -v "$MLOPS" >/dev/null 2>&1 || fail "$MLOPS not found: run make setup first" 2
docker info >/dev/null 2>&1 || fail "the Docker daemon does not answer (docker info failed): start it" 2

dump() {
  # Every pod's logs (previous containers too) and every event, for the CI artifact.
  mkdir -p "$ARTIFACTS"
  kubectl get events --all-namespaces --sort-by=.lastTimestamp > "$ARTIFACTS/events.txt" 2>&1 || true
  kubectl get pods --all-namespaces -o wide > "$ARTIFACTS/pods.txt" 2>&1 || true
  local ns pod
  while read -r ns pod; do
    [ -n "$pod" ] || continue
    kubectl -n "$ns" logs "$pod" --all-containers --prefix > "$ARTIFACTS/$ns.$pod.log" 2>&1 || true
    kubectl -n "$ns" logs "$pod" --all-containers --prefix --previous > "$ARTIFACTS/$ns.$pod.previous.log" 2>/dev/null || true
  done < <(kubectl get pods --all-namespaces --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name 2>/dev/null || true)
  echo "e2e-kind: pod logs and events in $ARTIFACTS" >&2
}

cleanup() {
  local rc=$?
  local pid
  for pid in "${FORWARD_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ "$rc" -ne 0 ]; then
    echo "e2e-kind: FAILED at step '$STEP' (exit $rc)" >&2
    if [ "$CREATED" = 1 ]; then dump; fi
  fi
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    echo "e2e-kind: keeping cluster $CLUSTER (KUBECONFIG=$KUBECONFIG)" >&2
  elif [ "$CREATED" = 1 ]; then
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || echo "e2e-kind: could not delete cluster $CLUSTER" >&2
  fi
  if [ -f mlops.lock ]; then { mkdir -p "$ARTIFACTS" && cp mlops.lock "$ARTIFACTS/mlops.lock"; } || echo "e2e-kind: could not keep mlops.lock" >&2; fi
  rm -rf "$WORK"
  exit "$rc"
}
CREATED=0
trap cleanup EXIT

step() { STEP="$1"; shift; echo "==> $STEP" >&2; "$@"; }

# The upstream manifests, before anything is built or created: each checked against the committed mlops.lock,
# and where the lock has no entry yet, recorded on this run (trust on first use, as `terraform init` does;
# charts/manifest_lock.py). A changed upstream file stops the run here. The lock goes to the artifacts:
# review it and commit it, and later runs verify against it.
step "lock upstream manifests" "$MLOPS" lock
step "build images" "$MLOPS" images build --tag "$TAG"
step "create cluster" kind create cluster --name "$CLUSTER" --image "$NODE_IMAGE" --kubeconfig "$KUBECONFIG" --wait 180s
CREATED=1
for image in "${IMAGES[@]}"; do
  step "load $image" kind load docker-image "kind.local/mlops-$image:$TAG" --name "$CLUSTER"
done
step "up" "$MLOPS" up --target kubernetes --yes

forward() {  # namespace, target, ports: a port-forward through the API server for the rest of the run
  kubectl -n "$1" port-forward "$2" "$3" >/dev/null 2>&1 &
  FORWARD_PIDS+=("$!")
}

# The registry and Prometheus live in the cluster: reach them through the API server.
STEP="reach mlflow, prometheus and the edge"
forward mlops svc/mlflow 15000:5000
forward mlops svc/prometheus 19090:9090
export MLOPS_REGISTRY__TRACKING_URI=http://127.0.0.1:15000
# The public edge: Envoy Gateway's proxy Service for our Gateway; predict connects to ingress_address
# while Host and SNI stay [kubernetes].ingress_host.
envoy="$(kubectl -n envoy-gateway-system get service -l gateway.envoyproxy.io/owning-gateway-namespace=mlops \
  -o jsonpath='{.items[0].metadata.name}')"
[ -n "$envoy" ] || fail "no Envoy proxy Service for the mlops Gateway in envoy-gateway-system"
forward envoy-gateway-system "service/$envoy" 18443:443
for _ in $(seq 30); do curl -fsS "$MLOPS_REGISTRY__TRACKING_URI/health" >/dev/null 2>&1 && break; sleep 2; done

step "data" "$MLOPS" data prepare
step "train v1" "$MLOPS" train --log --max-steps 20 --seed 1
step "register v1" "$MLOPS" register --alias champion
step "deploy v1" "$MLOPS" deploy --target kubernetes --alias champion
step "predict v1" "$MLOPS" predict --target kubernetes "this movie was great"
step "train v2" "$MLOPS" train --log --max-steps 20 --seed 2
step "register v2" "$MLOPS" register
# A good canary: judged on its own revision's traffic (probes top it up) and promoted.
step "canary v2 promoted" "$MLOPS" deploy --target kubernetes --version 2 --canary 50 --observe 1m --promote-if-healthy
step "predict after promote" "$MLOPS" predict --target kubernetes "awful side effects"
# A bad canary: the same version with a predictor that fails 30% of its requests (a new revision); the
# gate must roll it back and exit 1.
STEP="bad canary rolled back"
echo "==> $STEP" >&2
if MLOPS_SERVING__FAULT_ERROR_SHARE=0.3 "$MLOPS" deploy --target kubernetes --version 2 --canary 50 --observe 1m \
    --promote-if-healthy; then
  fail "a canary failing 30% of its requests was promoted"
fi
step "predict after rollback" "$MLOPS" predict --target kubernetes "it worked for me"
step "down --purge" "$MLOPS" down --target kubernetes --purge --yes

STEP="nothing left Terminating"
left="$(kubectl get namespaces,pods,persistentvolumeclaims --all-namespaces --no-headers 2>/dev/null | grep -w Terminating || true)"
[ -z "$left" ] || fail "still Terminating after down --purge:
$left"
echo "e2e-kind: passed" >&2
