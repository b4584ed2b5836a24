"""A pod's own network namespace for a program that binds a port another pod's program binds too.

Pods on one node each have their own network namespace and IP; the programs run here share this host's,
where two of Knative's bind :8080 (the controller's health probes, knative.dev/pkg
injection.HealthCheckDefaultPort; the autoscaler's stat server, cmd/autoscaler statsServerAddr) and KServe's
llmisvc binds what KServe's manager binds (:9443 webhook, :8081 probes), all fixed in code or in their
release's Deployment. So such a program runs in a namespace of its own (`unshare --user --net`, no
privileges needed), where it reaches the API server through a relay: 127.0.0.1:<port> inside -> a Unix
socket (files cross network namespaces) -> the API server's 127.0.0.1:<port> outside. The pod gets an IP of
its own (tests/controlplane_programs.py), and the way in is the pod's socket (`--pod`): a connection
there names a port ("9443\\n") and is joined to 127.0.0.1:<that port> inside.

kube-apiserver reaches pods the way a real one does where the pod network is not its own, through its
egress selector (`--egress-selector-config-file`, selection "cluster": webhooks, CRD conversion), here an
HTTP CONNECT proxy on a Unix socket (k8s.io/apiserver pkg/server/egressselector, tunnelHTTPConnect; the
proxy konnectivity's is): CONNECT <ip>:<port> goes into the pod whose socket is <pods dir>/<ip>, any other
address straight to it.

    python tests/pod_network.py outside SOCKET PORT          # host side: SOCKET -> 127.0.0.1:PORT
    unshare -rn python tests/pod_network.py inside SOCKET PORT [--pod POD_SOCKET] -- PROGRAM ARGS...
    python tests/pod_network.py egress SOCKET PODS_DIR       # the API server's way to the pods
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from typing import Callable

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child before exec: SIGKILL it when its parent dies, even by SIGKILL (no orphan: a program
    started here would otherwise outlive a killed test, reparented to init)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _join(a: socket.socket, b: socket.socket) -> None:
    for x, y in ((a, b), (b, a)):
        threading.Thread(target=_pipe, args=(x, y), daemon=True).start()


def _read_until(conn: socket.socket, end: bytes, limit: int = 8192) -> tuple[bytes, bytes]:
    """(head up to and without `end`, what came after it)."""
    data = b""
    while end not in data:
        chunk = conn.recv(1024)
        if not chunk or len(data) > limit:
            raise OSError("connection closed before its header ended")
        data += chunk
    head, _, rest = data.partition(end)
    return head, rest


def _serve(listener: socket.socket, handle: Callable[[socket.socket], None]) -> None:
    while True:
        client, _ = listener.accept()
        threading.Thread(target=handle, args=(client,), daemon=True).start()


def _relay_to(connect: Callable[[], socket.socket]) -> Callable[[socket.socket], None]:
    def handle(client: socket.socket) -> None:
        try:
            upstream = connect()
        except OSError:
            client.close()
            return
        _join(client, upstream)
    return handle


def _unix_listener(path: str) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    return listener


def _unix(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def _into_pod(client: socket.socket) -> None:
    """The pod's side of its socket: "<port>\\n", then the bytes for 127.0.0.1:<port> in here."""
    try:
        head, rest = _read_until(client, b"\n", 16)
        upstream = socket.create_connection(("127.0.0.1", int(head)))
        upstream.sendall(rest)
    except (OSError, ValueError):
        client.close()
        return
    _join(client, upstream)


def open_pod(pods_dir: str, ip: str, port: int) -> socket.socket:
    """A connection to <ip>:<port>: into the pod whose socket is <pods_dir>/<ip>, else to the address."""
    where = os.path.join(pods_dir, ip)
    if os.path.exists(where):
        s = _unix(where)
        s.sendall(f"{port}\n".encode())
        return s
    return socket.create_connection((ip, port), timeout=10)


def _egress(pods_dir: str) -> Callable[[socket.socket], None]:
    def handle(client: socket.socket) -> None:
        try:
            head, rest = _read_until(client, b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            host, port = target.rsplit(":", 1)
            if method != "CONNECT":
                raise ValueError(method)
            upstream = open_pod(pods_dir, host.strip("[]"), int(port))
            upstream.settimeout(None)
        except (OSError, ValueError) as exc:
            try:
                client.sendall(f"HTTP/1.1 502 Bad Gateway\r\n\r\n{exc}".encode())
            finally:
                client.close()
            return
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        upstream.sendall(rest)
        _join(client, upstream)
    return handle


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def main(argv: list[str]) -> int:
    side, path = argv[0], argv[1]
    if side == "egress":
        _serve(_unix_listener(path), _egress(argv[2]))
        return 0
    port = int(argv[2])
    if side == "outside":
        _serve(_unix_listener(path), _relay_to(lambda: socket.create_connection(("127.0.0.1", port))))
        return 0
    _loopback_up()
    listener = socket.create_server(("127.0.0.1", port))
    threading.Thread(target=_serve, args=(listener, _relay_to(lambda: _unix(path))), daemon=True).start()
    if "--pod" in argv[:argv.index("--")]:
        pod = _unix_listener(argv[argv.index("--pod") + 1])
        threading.Thread(target=_serve, args=(pod, _into_pod), daemon=True).start()
    child = subprocess.Popen(argv[argv.index("--") + 1:], preexec_fn=die_with_parent)
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
