"""The demo's last act: the broker exporter serves the failed-work page until Ctrl-C.

    page = ServedPage.start(settings, Path(".run") / "demo-exporter.log")
    return page.serve_until_interrupted()  # prints the page's address, waits for Ctrl-C

The exporter is the one ``make run`` starts beside the worker
(``python -m telemetry.broker_exporter -A worker``); it serves the operator API and
its page on ``OPS_HOST:OPS_PORT``, read-only unless ``OPS_TOKEN`` is set. The
demo's refused message is a dead letter there.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from telemetry.ops.access import ANY_ADDRESS
from telemetry.settings import TelemetrySettings

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
#: Ctrl-C and a polite kill both stop the page.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def page_address(settings: TelemetrySettings) -> str:
    """Where a browser on this machine finds the page (a wildcard bind is reached on loopback)."""
    host = settings.ops_host.strip()
    if host in ANY_ADDRESS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.ops_port}/failed"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class ServedPage:
    def __init__(
        self, process: subprocess.Popen[bytes], address: str, log_path: Path, read_only: bool
    ) -> None:
        self.process = process
        self.address = address
        self.log_path = log_path
        self.read_only = read_only

    @classmethod
    def start(cls, settings: TelemetrySettings, log_path: Path) -> ServedPage:
        """Starts the exporter and waits until its page answers; SystemExit with the
        exporter's own last line when it cannot (a taken port, a bad variable)."""
        log_path.parent.mkdir(exist_ok=True)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "telemetry.broker_exporter", "-A", "worker"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops it in order
            )
        address = page_address(settings)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(address.removesuffix("/failed") + "/api/v1/ops"):
                return cls(process, address, log_path, settings.ops_token is None)
            time.sleep(0.1)
        if process.poll() is None:
            process.kill()
        said = log_path.read_text(errors="replace").strip().splitlines()
        raise SystemExit(
            f"demo: the broker exporter did not serve the page: {said[-1] if said else log_path}"
        )

    def serve_until_interrupted(self) -> int:
        """Prints the address, serves until Ctrl-C (or SIGTERM), stops the exporter; the
        demo's exit status: 0, or 1 when the exporter stopped by itself."""
        how = "read-only: set OPS_TOKEN to requeue from it" if self.read_only else "OPS_TOKEN set"
        # Both set here: a demo started from a background job inherits SIGINT ignored.
        previous = {signum: signal.signal(signum, _interrupt) for signum in STOP_SIGNALS}
        try:
            print(f"\ndemo: failed work, the refused message among it: {self.address} ({how})")
            print(
                f"demo: the broker exporter serves it (its log is {self.log_path}); Ctrl-C stops it"
            )
            sys.stdout.flush()
            self.process.wait()
            print(f"demo: the broker exporter stopped by itself; see {self.log_path}")
            return 1
        except KeyboardInterrupt:
            return 0
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
