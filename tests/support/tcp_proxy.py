"""A TCP relay the test controls: cut, restored, slowed down or silenced.

    proxy = TcpProxy(6379).start()              # 127.0.0.1:<proxy.port> -> 127.0.0.1:6379
    proxy.cut(); proxy.restore()                 # refusals and resets, then service again
    proxy.delay = 0.2                            # every chunk, each way, 200 ms late
    proxy.silence(); proxy.unsilence()           # bytes swallowed, connections left open
    proxy.forget()                               # the connections so far go silent for good
                                                 # and the server's side closes; new ones pass

``tc netem`` is not in every kernel; the delay comes from here instead. Each
direction of each connection has a reader, which stamps every chunk with when
it is due, and a writer, which sends it then, so order is kept and a delay does
not slow the throughput. While silenced, every chunk is read and dropped and
nothing is closed: both ends see an open connection and no answer. ``forget``
is a NAT that timed out: for the connections it ends, the client keeps an open
socket that never answers again, and the server sees them closed.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time

from tests.support.worker_process import free_port


class TcpProxy:
    def __init__(
        self, target_port: int, target_host: str = "127.0.0.1", listen_host: str = "127.0.0.1"
    ) -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = free_port()
        #: Seconds every chunk is held, each way.
        self.delay = 0.0
        self._silent = threading.Event()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        #: Each connection: its upstream socket, and whether it was forgotten.
        self._pairs: list[tuple[socket.socket, threading.Event]] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    restore = start

    def cut(self) -> None:
        """Close the listener and every connection: clients see refusals and resets."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        for sock in [listener, *sockets]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    stop = cut

    def forget(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for upstream, forgotten in pairs:
            forgotten.set()
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_RDWR)

    def silence(self) -> None:
        self._silent.set()

    def unsilence(self) -> None:
        self._silent.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
                forgotten = threading.Event()
                self._pairs.append((upstream, forgotten))
            for source, sink in ((client, upstream), (upstream, client)):
                chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()
                threading.Thread(
                    target=self._read, args=(source, chunks, forgotten), daemon=True
                ).start()
                threading.Thread(target=self._write, args=(chunks, sink), daemon=True).start()

    def _read(
        self,
        source: socket.socket,
        chunks: queue.Queue[tuple[float, bytes]],
        forgotten: threading.Event,
    ) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if not (self._silent.is_set() or forgotten.is_set()):
                    chunks.put((time.monotonic() + self.delay, chunk))
        if not forgotten.is_set():  # a forgotten client's socket stays open, silent
            chunks.put((0.0, b""))

    @staticmethod
    def _write(chunks: queue.Queue[tuple[float, bytes]], sink: socket.socket) -> None:
        while True:
            due, chunk = chunks.get()
            if not chunk:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                sink.sendall(chunk)
            except OSError:
                break
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
