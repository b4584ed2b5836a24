"""A pod's own network namespace for a program that binds a port another pod's program binds too.

Pods on one node each have their own network namespace; the programs run here share this host's, and two of
Knative's bind :8080 (the controller's health probes, knative.dev/pkg injection.HealthCheckDefaultPort; the
autoscaler's stat server, cmd/autoscaler statsServerAddr), both fixed in code. So the autoscaler runs in
a namespace of its own (`unshare --user --net`, no privileges needed), where it reaches the API server
through a relay: 127.0.0.1:<port> inside -> a Unix socket (files cross network namespaces) -> the API
server's 127.0.0.1:<port> outside.

    python tests/pod_network.py outside SOCKET PORT          # host side: SOCKET -> 127.0.0.1:PORT
    unshare -rn python tests/pod_network.py inside SOCKET PORT -- PROGRAM ARGS...
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import threading

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


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


def _serve(listener: socket.socket, connect) -> None:
    while True:
        client, _ = listener.accept()
        try:
            upstream = connect()
        except OSError:
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def main(argv: list[str]) -> int:
    side, path, port = argv[0], argv[1], int(argv[2])
    if side == "outside":
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(64)
        _serve(listener, lambda: socket.create_connection(("127.0.0.1", port)))
        return 0
    _loopback_up()
    listener = socket.create_server(("127.0.0.1", port))

    def connect() -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        return s

    threading.Thread(target=_serve, args=(listener, connect), daemon=True).start()
    child = subprocess.Popen(argv[argv.index("--") + 1:])
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
