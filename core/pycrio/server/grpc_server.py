"""The CRI gRPC server on its unix socket.

The socket is created with mode 0660 from the start (a umask around the bind,
so there is no window in which it is world-writable). A socket file left by a
dead daemon is replaced; one that still answers belongs to a live daemon and
is never taken over.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from concurrent.futures import ThreadPoolExecutor

import grpc

from pycrio.kernel.kernel import Kernel
from pycrio.server import list_streaming
from pycrio.server.dispatch import generic_handlers

log = logging.getLogger("pycrio.server")

SOCKET_MODE = 0o660


class SocketInUse(Exception):
    """The listen path is held by a live server or by something that is not a socket."""


def prepare_socket_path(path: str) -> None:
    """Create the socket's directory and clear a stale socket file."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketInUse(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        log.info("removed stale socket %s left by a daemon that is gone", path)
        return
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno == errno.EAGAIN:  # backlog full: somebody is very much alive
            raise SocketInUse(f"another server is listening on {path}") from e
        raise
    finally:
        probe.close()
    raise SocketInUse(
        f"another server is listening on {path}; stop it first or use --listen with another path"
    )


class GrpcServer:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.path = kernel.config.listen
        self._server: grpc.Server | None = None
        self._inode: int | None = None

    def start(self) -> None:
        api = self.kernel.config.data["api"]
        prepare_socket_path(self.path)
        server = grpc.server(
            ThreadPoolExecutor(max_workers=api["grpc_workers"], thread_name_prefix="cri"),
            # The streaming list calls the stubs lack, tried after the stubs' methods.
            handlers=generic_handlers(self.kernel) + list_streaming.generic_handlers(self.kernel),
            options=[
                ("grpc.max_send_message_length", api["grpc_max_send_msg_size"]),
                ("grpc.max_receive_message_length", api["grpc_max_recv_msg_size"]),
            ],
        )
        old_umask = os.umask(0o117)
        try:
            server.add_insecure_port(f"unix:{self.path}")
            server.start()
        finally:
            os.umask(old_umask)
        os.chmod(self.path, SOCKET_MODE)
        self._inode = os.lstat(self.path).st_ino
        self._server = server

    def stop(self, grace: float) -> None:
        """Refuse new calls, give in-flight ones ``grace`` seconds, remove the socket."""
        if self._server is None:
            return
        done = self._server.stop(grace)
        done.wait(grace + 5)
        self._server = None
        try:
            if os.lstat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
