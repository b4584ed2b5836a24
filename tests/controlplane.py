"""A real Kubernetes control plane on loopback for the cluster tests, in the manner of controller-runtime's
envtest: etcd, kube-apiserver, kube-controller-manager (and kube-scheduler) as local processes, built from
the Go module proxy at the versions pinned in controlplane/*/go.mod (`make controlplane`).

What decides admission, defaulting, validation, finalizers and ownership is the real program: the API
server's own admission chain (PodSecurity, ServiceAccount, NamespaceLifecycle, the webhook plugins, ...)
with RBAC authorization, and the real controllers (deployment, replicaset, namespace, garbage collector,
serviceaccount-token, endpointslice, ...).

No change to any upstream object. kwok is the node (tests/controlplane_kwok.py): it marks the pods the
scheduler binds Running, with this host's IP; the pods of the controllers and webhooks built here run
their program as a process (tests/controlplane_programs.py, `Kubelet`). kube-apiserver runs with
--enable-aggregator-routing, so it calls a webhook Service at its Ready endpoint, that pod, as it calls
any Service it cannot route to by ClusterIP (there is no cluster network here), through its egress
selector (tests/pod_network.py), which also reaches the pods given a network namespace and IP of their own.

Example::

    with ControlPlane.running(tmp_dir) as cp:
        cluster = KubeCluster.connect(str(cp.kubeconfig), "", "default")
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .controlplane_certs import Authority, CertPair, service_account_keys, write_kubeconfig
from .pod_network import die_with_parent
from .support import free_port

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "scripts" / "build-controlplane.sh"
CORE_PROGRAMS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SERVICE_CIDR = "10.0.0.0/24"
START_TIMEOUT_S = 120.0
# The data plane's verdict on a bad model: pods whose revision serves model version 13 never get Ready, as a
# crashing container's would not (a kwok Stage selector: jq over the pod, value; controlplane_kwok).
BAD_VERSION = "13"
NEVER_READY = ('.metadata.annotations["mlops.dev/model-version"]', BAD_VERSION)


class ControlPlaneMissing(RuntimeError):
    """The programs are not built (or cannot be: no Go); the message says what to run or install."""


def bin_dir(programs: tuple[str, ...] = CORE_PROGRAMS) -> Path:
    """Where `make controlplane` put the programs; refuses (one line) when Go or a program is missing."""
    done = subprocess.run(["bash", str(BUILD_SCRIPT), "--bin-dir"], capture_output=True, text=True)
    if done.returncode != 0:
        raise ControlPlaneMissing(done.stderr.strip() or f"{BUILD_SCRIPT} --bin-dir failed")
    where = Path(done.stdout.strip())
    missing = [p for p in programs if not (where / p).is_file()]
    if missing:
        raise ControlPlaneMissing(f"control plane programs not built ({', '.join(missing)} missing in {where}): "
                                  "run `make controlplane` (cold: tens of minutes, then cached)")
    return where


_die_with_parent = die_with_parent  # in each child before exec (tests/pod_network.py): no orphans


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    started: float

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def rss_mib(self) -> float:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)


@dataclass
class ControlPlane:
    workdir: Path
    bin: Path
    processes: list[Process] = field(default_factory=list)
    never_ready: tuple[str, str] | None = NEVER_READY
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    @contextlib.contextmanager
    def running(cls, workdir: Path, *, scheduler: bool = True,
                never_ready: tuple[str, str] | None = NEVER_READY) -> Iterator["ControlPlane"]:
        """Start etcd, kube-apiserver, kube-controller-manager (and kube-scheduler with kwok's node); stop them all on exit."""
        plane = cls(workdir=workdir, bin=bin_dir(), never_ready=never_ready)
        try:
            plane._start(scheduler)
            yield plane
        finally:
            plane.stop()

    # --- programs --------------------------------------------------------------------------------

    def start(self, name: str, args: list[str], *, env: dict[str, str] | None = None, program: str = "",
              wrap: tuple[str, ...] = ()) -> Process:
        """Run a program from the bin dir (behind `wrap`, a command that runs it) in its own process group,
        output to workdir/<name>.log."""
        log = self.workdir / f"{name}.log"
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir),
                "TMPDIR": str(self.workdir / "tmp")}
        (self.workdir / "tmp").mkdir(exist_ok=True)
        with log.open("wb") as out:
            popen = subprocess.Popen([*wrap, str(self.bin / (program or name)), *args], stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**base, **(env or {})}, cwd=self.workdir,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        proc = Process(name, popen, log, time.monotonic())
        self.processes.append(proc)
        return proc

    def start_relay(self, name: str, mode: str, sock: Path, *args: str) -> Process:
        """tests/pod_network.py `mode` on Unix socket `sock` (a relay or the API server's egress proxy);
        returns once the socket is there."""
        log = self.workdir / f"{name}.log"
        argv = [sys.executable, str(Path(__file__).with_name("pod_network.py")), mode, str(sock), *args]
        with log.open("wb") as out:
            popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        proc = Process(name, popen, log, time.monotonic())
        self.processes.append(proc)
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline or popen.poll() is not None:
                raise RuntimeError(f"{name} did not open {sock}:\n{proc.tail()}")
            time.sleep(0.05)
        return proc

    def stop(self) -> None:
        if getattr(self, "kubelet", None) is not None:
            self.kubelet.stop()
        for proc in reversed(self.processes):  # dependants first, etcd last
            proc.stop()

    def wait_healthy(self, proc: Process, url: str, *, client: CertPair | None = None,
                     timeout_s: float = START_TIMEOUT_S) -> float:
        """Poll an HTTPS health endpoint until 200; seconds from the process start. Raises with the log tail."""
        ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        if client is None:  # a component's self-signed serving cert: only liveness is asked of it
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        else:
            ctx.load_cert_chain(str(client.cert), str(client.key))
        deadline = proc.started + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
            try:
                with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
                    if resp.status == 200:
                        return time.monotonic() - proc.started
            except (urllib.error.URLError, OSError) as exc:
                last = str(getattr(exc, "read", lambda: b"")() or exc)[-400:]
            time.sleep(0.2)
        raise RuntimeError(f"{proc.name} not healthy at {url} after {timeout_s:.0f}s ({last}):\n{proc.tail()}")

    # --- the control plane -----------------------------------------------------------------------

    def _start(self, scheduler: bool) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(parents=True)
        self.ca = Authority(pki)
        sa_key, sa_pub = service_account_keys(pki)
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        serving = self.ca.issue("apiserver", common_name="kube-apiserver",
                                hosts=("127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
                                       "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "10.0.0.1"))
        self.admin = self.ca.issue("admin", common_name="mlops-test-admin", groups=("system:masters",))
        self.kubeconfig = write_kubeconfig(self.workdir / "admin.kubeconfig", self.server, self.ca, self.admin, "admin")

        # the API server's way to the pods (webhooks, CRD conversion): its egress selector, a CONNECT proxy
        # that takes a pod's address into the network namespace of a pod that has one (tests/pod_network.py)
        self.pods = self.workdir / "pods"
        self.pods.mkdir()
        self.start_relay("egress", "egress", self.workdir / "egress.sock", str(self.pods))
        egress = self.workdir / "egress.yaml"
        egress.write_text(json.dumps({
            "apiVersion": "apiserver.k8s.io/v1beta1", "kind": "EgressSelectorConfiguration",
            "egressSelections": [{"name": "cluster", "connection": {
                "proxyProtocol": "HTTPConnect", "transport": {"uds": {"udsName": str(self.workdir / "egress.sock")}}}}]}))
        etcd_port, peer_port = free_port(), free_port()
        self.start("etcd", [
            f"--data-dir={self.workdir / 'etcd'}", "--name=default", "--unsafe-no-fsync",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}", f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{peer_port}", "--listen-metrics-urls=", "--log-level=warn"])
        apiserver = self.start("kube-apiserver", [
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={self.ca.cert}", f"--cert-dir={pki}",
            "--authorization-mode=Node,RBAC",
            # kubeadm's list on top of the defaults (which already hold PodSecurity and both webhook plugins);
            # named here so that a test reading this knows what runs
            "--enable-admission-plugins=NodeRestriction,NamespaceLifecycle,LimitRanger,ServiceAccount,"
            "DefaultStorageClass,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,"
            "ValidatingAdmissionPolicy,ResourceQuota",
            "--allow-privileged=true",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_pub}", f"--service-account-signing-key-file={sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--profiling=false", "-v=1",
            # a webhook Service is called at its Ready endpoint (the pod's IP, kwok's: this host), not at
            # its ClusterIP, which nothing here routes (cmd/kube-apiserver/app/server.go buildServiceResolver)
            "--enable-aggregator-routing=true", f"--egress-selector-config-file={egress}"])
        self.timings["kube-apiserver ready (s)"] = self.wait_healthy(
            apiserver, f"{self.server}/readyz", client=self.admin)

        kcm_user = self.ca.issue("kcm", common_name="system:kube-controller-manager")
        kcm_config = write_kubeconfig(self.workdir / "kcm.kubeconfig", self.server, self.ca, kcm_user,
                                      "system:kube-controller-manager")
        kcm_port = free_port()
        kcm = self.start("kube-controller-manager", [
            f"--kubeconfig={kcm_config}", f"--authentication-kubeconfig={kcm_config}",
            f"--authorization-kubeconfig={kcm_config}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}", f"--cert-dir={self.workdir / 'kcm-certs'}",
            # each controller acts as its own service account, with its bootstrap RBAC role (as kubeadm runs it)
            "--use-service-account-credentials=true", f"--service-account-private-key-file={sa_key}",
            f"--root-ca-file={self.ca.cert}", f"--cluster-signing-cert-file={self.ca.cert}",
            f"--cluster-signing-key-file={self.ca.key}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*", "-v=1"])
        self.timings["kube-controller-manager healthy (s)"] = self.wait_healthy(kcm, f"https://127.0.0.1:{kcm_port}/healthz")
        if scheduler:
            sched_user = self.ca.issue("scheduler", common_name="system:kube-scheduler")
            sched_config = write_kubeconfig(self.workdir / "scheduler.kubeconfig", self.server, self.ca, sched_user,
                                            "system:kube-scheduler")
            sched_port = free_port()
            sched = self.start("kube-scheduler", [
                f"--kubeconfig={sched_config}", f"--authentication-kubeconfig={sched_config}",
                f"--authorization-kubeconfig={sched_config}", "--leader-elect=false",
                "--bind-address=127.0.0.1", f"--secure-port={sched_port}", "-v=1"])
            self.timings["kube-scheduler healthy (s)"] = self.wait_healthy(sched, f"https://127.0.0.1:{sched_port}/healthz")
            self._start_kwok()

    def _start_kwok(self) -> None:
        """kwok as the node and its kubelet (tests/controlplane_kwok.py): pods bound by the scheduler run."""
        from mlops_cli.adapters.kube_apply import KubeCluster

        from . import controlplane_kwok as kwok

        self.host_ip = kwok.host_ip()
        config = self.workdir / "kwok.yaml"
        from .controlplane_programs import PROGRAMS, Kubelet

        run_here = tuple((p.namespace, *p.selector.split("=", 1)) for p in PROGRAMS)
        config.write_text(kwok.config(module_dir("kwok", "sigs.k8s.io/kwok"), self.host_ip, run_here, self.never_ready))
        self.start("kwok", [f"--kubeconfig={self.kubeconfig}", f"--config={config}", "--server-address="])
        cluster = KubeCluster.connect(str(self.kubeconfig), "", "default")
        cluster.request("POST", "/api/v1/nodes", body=kwok.node(self.host_ip))
        started = time.monotonic()
        while not any(c["type"] == "Ready" and c["status"] == "True" for c in
                      (cluster.request("GET", f"/api/v1/nodes/{kwok.NODE}").get("status") or {}).get("conditions") or []):
            if time.monotonic() - started > 60:
                raise RuntimeError(f"kwok did not make node {kwok.NODE} Ready in 60 s:\n{self.processes[-1].tail()}")
            time.sleep(0.2)
        self.timings["kwok node Ready (s)"] = time.monotonic() - started
        from .controlplane_certmanager import CertIssuer
        from .controlplane_kourier import kourier_status

        self.kubelet = Kubelet(self, also=(CertIssuer(self).sync, kourier_status))
        self.kubelet.start()

    def rss_mib(self) -> dict[str, float]:
        return {p.name: round(p.rss_mib(), 1) for p in self.processes}


def events_of(cluster: Any, namespace: str, kind: str, name: str) -> list[str]:
    """The Events the real controllers recorded about one object (reason: message)."""
    body = cluster.request("GET", f"/api/v1/namespaces/{namespace}/events",
                           query=[("fieldSelector", f"involvedObject.kind={kind},involvedObject.name={name}")])
    return [f"{e.get('reason')}: {e.get('message')}" for e in (body or {}).get("items", [])]


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)[:4000]


def module_dir(group: str, module: str) -> Path:
    """The source of `module` at the version controlplane/<group>/go.mod pins, from the Go module cache
    (downloaded and checked against go.sum by `go mod download`): where upstream's own YAML files are read."""
    done = subprocess.run(["go", "mod", "download", "-json", module], cwd=ROOT / "controlplane" / group,
                          capture_output=True, text=True)
    info = json.loads(done.stdout or "{}")
    if done.returncode != 0 or not info.get("Dir"):
        raise ControlPlaneMissing(f"go mod download {module} (controlplane/{group}) failed: "
                                  f"{info.get('Error') or done.stderr.strip()}")
    return Path(info["Dir"])


def service_account_kubeconfig(plane: ControlPlane, cluster: Any, namespace: str, name: str) -> Path:
    """A kubeconfig holding a fresh token of ServiceAccount namespace/name (TokenRequest API), so that
    an upstream controller runs here with exactly the RBAC its release manifest grants it."""
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 7200}}
    token = cluster.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", body=body)
    return write_kubeconfig(plane.workdir / f"{name}.kubeconfig", plane.server, plane.ca, token["status"]["token"], name)
