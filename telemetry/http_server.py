"""An HTTP server on a thread of its own, as every endpoint of the telemetry runs one.

    server = BackgroundServer(host, port, handler_class, "telemetry-http")  # binds now
    server.start()      # serves on a daemon thread
    server.stop()       # stops serving and closes the socket

The port is bound when the server is built, so a taken port fails before
anything starts; requests are served once ``start`` runs. The worker's
endpoints and the beat's (``telemetry.endpoints``) and the operator API
(``telemetry.ops.server``) are built on it, each with a handler of its own.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class BackgroundServer:
    """Binds at construction (so a taken port fails fast), serves after ``start()``."""

    def __init__(
        self, host: str, port: int, handler: type[BaseHTTPRequestHandler], thread_name: str
    ) -> None:
        """Raises OSError when ``host:port`` cannot be bound."""
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread_name = thread_name
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.httpd.serve_forever, name=self.thread_name, daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread = None
        self.httpd.server_close()

    def close_inherited_socket(self) -> None:
        """In a forked pool process: drop the listening socket without shutting the parent's server."""
        self.httpd.socket.close()
