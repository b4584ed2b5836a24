#!/usr/bin/env bash
# Builds the real control plane the cluster tests run against (tests/controlplane.py): etcd, the
# Kubernetes control plane, and the controllers/webhooks `mlops up` installs, each from the Go module
# proxy at the versions pinned in controlplane/<group>/go.mod (go.sum is the hash pin).
#
#   scripts/build-controlplane.sh              build what the tests run, if missing; print each build time
#   scripts/build-controlplane.sh all          also the programs no test runs yet (none today)
#   scripts/build-controlplane.sh NAME...      just these programs
#   scripts/build-controlplane.sh --bin-dir    print the directory the programs are (or will be) in
#
# Each program is built into ${MLOPS_CONTROLPLANE_CACHE:-~/.cache/mlops/controlplane}/programs/<dir>-<key>/,
# <key> being the sha256 of the Go version, the build flags and that module dir's go.mod/go.sum: a change
# there rebuilds the programs of that dir only (Envoy Gateway's bump does not rebuild kube-apiserver).
# The tests read <cache>/<all>/bin (<all>: the sha256 of every program's key), links to those programs;
# a warm run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# module dir (under controlplane/) | package | program name | tests: run by the tests (built by default)
# or extra: built on request until a test runs it (none today). Cold, on 2 busy cores: kwok 13 min; envoy-gateway
# 35 min at load 13-17; kserve-llmisvc 95 s after kserve-manager (it shares that module's dependencies).
# Built in this order, one at a time (2 cores).
PROGRAMS=(
  "etcd go.etcd.io/etcd/server/v3 etcd tests"
  "kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver tests"
  "kubernetes k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager tests"
  "kubernetes k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler tests"
  "kserve github.com/kserve/kserve/cmd/manager kserve-manager tests"
  "kserve github.com/kserve/kserve/cmd/llmisvc kserve-llmisvc tests"
  "knative knative.dev/serving/cmd/controller knative-controller tests"
  "knative knative.dev/serving/cmd/webhook knative-webhook tests"
  "knative knative.dev/serving/cmd/autoscaler knative-autoscaler tests"
  "kwok sigs.k8s.io/kwok/cmd/kwok kwok tests"
  "envoy-gateway github.com/envoyproxy/gateway/cmd/envoy-gateway envoy-gateway tests"
)
FLAGS=(-trimpath "-ldflags=-s -w")
# Kubernetes' release builds stamp the version into the binaries (hack/lib/version.sh kube::version::ldflags);
# without it kube-apiserver reports gitVersion "v0.0.0-master+$Format:%H$" at /version, which is no
# version at all to its clients (Knative's controllers refuse to start: knative.dev/pkg version.CheckMinimumVersion).
kube_version=$(sed -n 's/^\tk8s.io\/kubernetes \(v[0-9.]*\).*/\1/p' controlplane/kubernetes/go.mod)
kube_minor=${kube_version#v*.}; kube_minor=${kube_minor%%.*}
KUBE_LDFLAGS="-s -w"
for key_val in "gitVersion=$kube_version" gitMajor=1 "gitMinor=$kube_minor" gitTreeState=clean; do
  KUBE_LDFLAGS+=" -X k8s.io/client-go/pkg/version.$key_val -X k8s.io/component-base/version.$key_val"
done

# The newest `go` line of our modules is the oldest Go that builds them all.
need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' controlplane/*/go.mod | sort -V | tail -1)
if ! command -v go >/dev/null 2>&1; then
  echo "error: the test control plane is built with Go >= $need: install Go (https://go.dev/dl/) and put \`go\` on PATH" >&2
  exit 1
fi
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
  echo "error: the test control plane needs Go >= $need, this machine has $have: install a newer Go (https://go.dev/dl/)" >&2
  exit 1
fi

cache="${MLOPS_CONTROLPLANE_CACHE:-$HOME/.cache/mlops/controlplane}"
gover=$(go version)
module_key() {  # the key of one module dir under controlplane/
  { echo "$gover"; printf '%s\n' "${FLAGS[@]}"; [ "$1" != kubernetes ] || echo "$KUBE_LDFLAGS"
    cat "controlplane/$1/go.mod" "controlplane/$1/go.sum"; } | sha256sum | cut -c1-16
}
declare -A KEYS
for entry in "${PROGRAMS[@]}"; do
  read -r dir _ <<<"$entry"
  [ -n "${KEYS[$dir]:-}" ] || KEYS[$dir]=$(module_key "$dir")
done
key=$(for dir in $(printf '%s\n' "${!KEYS[@]}" | sort); do echo "$dir ${KEYS[$dir]}"; done | sha256sum | cut -c1-16)
bin="$cache/$key/bin"
if [ "${1:-}" = "--bin-dir" ]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
total_start=$(date +%s)
for entry in "${PROGRAMS[@]}"; do
  read -r dir pkg name set <<<"$entry"
  case " $* " in
    "  ") [ "$set" = tests ] || continue ;;
    *" all "*) ;;
    *" $name "*) ;;
    *) continue ;;
  esac
  built="$cache/programs/$dir-${KEYS[$dir]}"
  if [ -x "$built/$name" ]; then
    echo "$name: built already"
  else
    mkdir -p "$built"
    start=$(date +%s)
    # -mod=readonly: go.sum must already pin every module (a missing line fails instead of being added)
    flags=("${FLAGS[@]}")
    [ "$dir" != kubernetes ] || flags=(-trimpath "-ldflags=$KUBE_LDFLAGS")
    (cd "controlplane/$dir" && go build -mod=readonly "${flags[@]}" -o "$built/.$name.tmp" "$pkg")
    mv "$built/.$name.tmp" "$built/$name"  # a build killed half-way leaves no program that looks finished
    echo "$name: built in $(( $(date +%s) - start ))s ($(du -m "$built/$name" | cut -f1) MiB)"
  fi
  ln -sfn "../../programs/$dir-${KEYS[$dir]}/$name" "$bin/$name"
done
echo "control plane programs in $bin ($(( $(date +%s) - total_start ))s)"
