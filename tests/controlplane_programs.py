"""Upstream controllers and webhooks run as the pods of their release Deployments: a kubelet for the few
pods whose program is built here (`make controlplane`).

The Deployment comes from the upstream release file, applied by `mlops up` (or a fixture) to the real
control plane; its pod is created by the real ReplicaSet controller, admitted by Pod Security and bound by
the scheduler. kwok leaves these pods alone (controlplane_kwok.RUN_HERE); `Kubelet` starts the program the
pod runs, with what the pod would give it: the container's args and environment (values and the downward
API), a token of the pod's ServiceAccount (so its RBAC is the release's), its Secret volumes as files.
Once the program answers its readiness check the pod is marked Running and Ready, as a kubelet would
(so a Deployment is Available only when its webhook answers); when the pod is deleted, the program stops.

Pods share this host's network (kwok gives every pod the node's IP), so two programs cannot both bind a
port each would own in its pod: `PROFILING_PORT=0` moves knative.dev/pkg's profiling port, and the
programs that bind a port another one binds get a network namespace of their own and a pod IP of their
own (`own_network`, tests/pod_network.py): the two that bind :8080 in code (Knative's controller: health
probes; the autoscaler: its stat server), and KServe's llmisvc, whose release Deployment serves its
webhook on :9443 and probes on :8081 as KServe's manager does. kube-apiserver reaches such a pod's
webhook at that IP through its egress proxy, as any webhook: Service -> EndpointSlice -> pod IP:port.
"""

from __future__ import annotations

import base64
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .controlplane import ControlPlane, Process, service_account_kubeconfig


@dataclass(frozen=True)
class Program:
    namespace: str
    selector: str          # label selector of the Deployment's pods
    container: str
    program: str           # in the bin dir
    ready_url: str = ""    # polled until 200 (empty: ready once started)
    own_network: bool = False
    env: tuple[tuple[str, str], ...] = (("PROFILING_PORT", "0"),)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.selector.split('=', 1)[1]}"


KNATIVE = (Program("knative-serving", "app=webhook", "webhook", "knative-webhook", "https://127.0.0.1:8443/"),
           Program("knative-serving", "app=controller", "controller", "knative-controller", own_network=True),
           Program("knative-serving", "app=autoscaler", "autoscaler", "knative-autoscaler", own_network=True))
KSERVE = (Program("kserve", "control-plane=kserve-controller-manager", "manager", "kserve-manager",
                  "http://127.0.0.1:8081/readyz"),
          # the LLMInferenceService controller and its webhooks (cmd/llmisvc): what refuses to delete a
          # well-known LLMInferenceServiceConfig (issue 22 item 2, tests/test_real_llmisvc_down.py)
          Program("kserve", "control-plane=llmisvc-controller-manager", "manager", "kserve-llmisvc",
                  "http://127.0.0.1:8081/readyz", own_network=True))
PROGRAMS = KNATIVE + KSERVE
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
MOUNT_SERVICE_ACCOUNT = (f'mount -t tmpfs tmpfs /var/run && mkdir -p {SERVICE_ACCOUNT_DIR} && cp "$0"/* {SERVICE_ACCOUNT_DIR}/ '
                         '&& exec "$@"')


def container_env(pod: dict[str, Any], spec: dict[str, Any], ip: str, host_ip: str = "") -> dict[str, str]:
    """The container's environment as the kubelet sets it: plain values and the downward API's fieldRefs
    (the pod's IP is the one it is given: `ip`)."""
    fields = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": pod["metadata"]["namespace"],
              "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
              "spec.nodeName": pod["spec"].get("nodeName", ""), "status.podIP": ip, "status.hostIP": host_ip or ip}
    env = {}
    for var in spec.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "fieldRef" in (var.get("valueFrom") or {}):
            env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


@dataclass
class Kubelet:
    """Runs the `programs` of pods bound to kwok's node (module docstring); a thread polling the API server."""
    plane: ControlPlane
    programs: tuple[Program, ...] = PROGRAMS
    running: dict[str, tuple[Program, Process, bool]] = field(default_factory=dict)  # pod uid -> (program, process, ready)
    pod_ips: dict[str, str] = field(default_factory=dict)  # pod uid -> its own IP (own_network)
    errors: list[str] = field(default_factory=list)
    also: tuple[Any, ...] = ()  # more syncs on each turn (controlplane_certmanager.CertIssuer.sync)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        from mlops_cli.adapters.kube_apply import KubeCluster

        self.cluster = KubeCluster.connect(str(self.plane.kubeconfig), "", "default")
        self.thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        for _, proc, _ in self.running.values():
            proc.stop()

    def process(self, program: str) -> Process | None:
        return next((p for prog, p, _ in self.running.values() if prog.program == program and p.popen.poll() is None), None)

    def _loop(self) -> None:
        while not self._stop.wait(0.3):
            try:
                self._sync()
            except Exception as exc:  # noqa: BLE001 - a kubelet keeps going; the test sees the errors
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def _sync(self) -> None:
        for sync in self.also:
            sync(self.cluster)
        seen = set()
        for program in self.programs:
            for pod in self.cluster.list_objects("v1", "Pod", program.namespace, program.selector):
                uid = pod["metadata"]["uid"]
                if not pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp"):
                    continue
                seen.add(uid)
                if uid not in self.running:
                    proc = self._run(program, pod)
                    if proc is None:  # a Secret it mounts is not there yet: the kubelet retries
                        seen.discard(uid)
                        continue
                    self.running[uid] = (program, proc, False)
                prog, proc, ready = self.running[uid]
                if proc.popen.poll() is not None:  # crashed: say so with its log (a kubelet would restart it)
                    self.errors.append(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail(5)}")
                    self.running[uid] = (prog, proc, True)  # reported once; the pod keeps what it had
                    continue
                if not ready and _answers(prog.ready_url, self._pod_socket(uid)):
                    self._mark_ready(pod)
                    self.running[uid] = (prog, proc, True)
        for uid in set(self.running) - seen:  # the pod is being deleted or gone: its program stops
            self.running.pop(uid)[1].stop()

    def pod_ip(self, uid: str) -> str:
        return self.pod_ips.get(uid, self.plane.host_ip)

    def _pod_socket(self, uid: str) -> Path | None:
        return self.plane.pods / self.pod_ips[uid] if uid in self.pod_ips else None

    def _run(self, program: Program, pod: dict[str, Any]) -> Process | None:
        spec = next(c for c in pod["spec"]["containers"] if c["name"] == program.container)
        name = f"{program.key.replace('/', '-')}-{pod['metadata']['name'][-5:]}"
        tmp = self.plane.workdir / name / "tmp"
        if not self._mount_secrets(pod, spec, tmp):
            return None
        uid = pod["metadata"]["uid"]
        if program.own_network:  # a pod IP of its own, as a CNI gives (10.244.0.0/16: kind's pod subnet)
            self.pod_ips[uid] = f"10.244.0.{10 + len(self.pod_ips)}"
        sa = pod["spec"].get("serviceAccountName", "default")
        kubeconfig = service_account_kubeconfig(self.plane, self.cluster, program.namespace, sa)
        env = {**container_env(pod, spec, self.pod_ip(uid), self.plane.host_ip), "KUBECONFIG": str(kubeconfig),
               "TMPDIR": str(tmp), **dict(program.env)}
        account = self.plane.workdir / name / "serviceaccount"
        wrap = pod_wrap(self.plane, name, program.namespace, account, self._pod_socket(uid))
        return self.plane.start(name, list(spec.get("args") or []), env=env, program=program.program, wrap=wrap)

    def _mount_secrets(self, pod: dict[str, Any], spec: dict[str, Any], tmp: Path) -> bool:
        """Secret volumes mounted under /tmp appear under the program's TMPDIR (it reads os.TempDir());
        False while one of the Secrets does not exist (a kubelet waits for it too)."""
        tmp.mkdir(parents=True, exist_ok=True)
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        for mount in spec.get("volumeMounts") or []:
            secret = (volumes.get(mount["name"]) or {}).get("secret")
            if not secret or not mount["mountPath"].startswith("/tmp/"):
                continue
            live = self.cluster.get({"apiVersion": "v1", "kind": "Secret",
                                     "metadata": {"name": secret["secretName"], "namespace": pod["metadata"]["namespace"]}})
            if live is None:
                return False
            where = tmp / mount["mountPath"].removeprefix("/tmp/")
            where.mkdir(parents=True, exist_ok=True)
            for key, value in (live.get("data") or {}).items():
                (where / key).write_bytes(base64.b64decode(value))
        return True

    def _mark_ready(self, pod: dict[str, Any]) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ip = self.plane.host_ip
        conditions = [{"type": t, "status": "True", "lastTransitionTime": now}
                      for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
        statuses = [{"name": c["name"], "image": c["image"], "imageID": "", "ready": True, "restartCount": 0,
                     "started": True, "state": {"running": {"startedAt": now}}} for c in pod["spec"]["containers"]]
        pod_ip = self.pod_ip(pod["metadata"]["uid"])
        body = {"status": {"phase": "Running", "conditions": conditions, "containerStatuses": statuses, "startTime": now,
                           "hostIP": ip, "hostIPs": [{"ip": ip}], "podIP": pod_ip, "podIPs": [{"ip": pod_ip}]}}
        self.cluster.request("PATCH", f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}/status",
                             body=body, content_type="application/strategic-merge-patch+json")


def pod_wrap(plane: ControlPlane, name: str, namespace: str, account: Path, pod_socket: Path | None) -> tuple[str, ...]:
    """The command a pod's program runs behind: its service account volume at the well-known path, in a
    mount namespace of the program's own (controller-runtime reads its namespace there for leader election:
    --leader-elect in the release args); given `pod_socket`, also a network namespace of its own, entered
    through that socket (tests/pod_network.py), and a relay started here to reach the API server from it."""
    account.mkdir(parents=True, exist_ok=True)
    (account / "namespace").write_text(namespace)
    (account / "ca.crt").write_bytes(plane.ca.pem)
    wrap: tuple[str, ...] = ("unshare", "--user", "--map-root-user", "--mount", "--kill-child",
                             *(("--net",) if pod_socket else ()), "sh", "-c", MOUNT_SERVICE_ACCOUNT, str(account))
    if pod_socket:
        relay, sock = str(Path(__file__).with_name("pod_network.py")), plane.workdir / f"{name}.sock"
        plane.start_relay(f"{name}-relay", "outside", sock, str(plane.port))
        wrap += (sys.executable, relay, "inside", str(sock), str(plane.port), "--pod", str(pod_socket), "--")
    return wrap


def _answers(url: str, pod_socket: Path | None = None) -> bool:
    """Whether `url` answers 200, as a kubelet's probe asks; at the pod's own IP (its socket) if it has one."""
    if not url:
        return True
    import http.client
    import ssl
    import urllib.parse

    from .pod_network import open_pod

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    parts = urllib.parse.urlsplit(url)
    try:
        if pod_socket is None:
            with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "kube-probe/1.35"}),
                                        context=ctx, timeout=2) as resp:
                return resp.status == 200
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
        conn.sock = open_pod(str(pod_socket.parent), pod_socket.name, parts.port)
        conn.sock.settimeout(2)
        if parts.scheme == "https":
            conn.sock = ctx.wrap_socket(conn.sock)
        conn.request("GET", parts.path or "/", headers={"User-Agent": "kube-probe/1.35"})
        status = conn.getresponse().status
        conn.close()
        return status == 200
    except Exception:  # noqa: BLE001 - not answering yet, whatever the reason
        return False
