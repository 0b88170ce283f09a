"""gunicorn hooks of `bank serve`: a projector process beside the workers.

gunicorn's master runs these. Before it starts its workers it starts
`bank projector` and waits (a bounded time) until it has caught up, so that
reads are served from the first request on; it starts it again if it dies,
and stops it when the server stops.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from typing import IO, Any

from prometheus_client import multiprocess

from cli.projector import READY_LINE

logger = logging.getLogger(__name__)

RUN_PROJECTOR_SETTING = "BANK_SERVE_PROJECTOR"
PROJECTOR_COMMAND = [sys.executable, "-m", "cli", "projector"]
READY_SECONDS = 60.0
RESTART_SECONDS = 1.0
STOP_SECONDS = 10.0


class ProjectorProcess:
    """One `bank projector` child, kept running until stopped."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self._watch = threading.Thread(
            target=self._keep_running, name="bank-projector", daemon=True
        )

    def start(self, ready_seconds: float = READY_SECONDS) -> bool:
        """Start the projector (restarted if it dies); whether it caught up in time."""
        self._watch.start()
        return self.ready.wait(ready_seconds)

    def stop(self) -> None:
        """Stop the projector (SIGTERM, then SIGKILL) and do not restart it."""
        self.stopping.set()
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _keep_running(self) -> None:
        while not self.stopping.is_set():
            self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE)
            assert self.process.stdout is not None
            self._relay(self.process.stdout)
            status = self.process.wait()
            if self.stopping.is_set():
                return
            logger.warning("projector exited with %s; restarting it", status)
            self.stopping.wait(RESTART_SECONDS)

    def _relay(self, output: IO[bytes]) -> None:
        """Pass the projector's output on, noting when it says it caught up."""
        for line in output:
            if line.decode(errors="replace").strip() == READY_LINE:
                self.ready.set()
            sys.stdout.buffer.write(line)
            sys.stdout.flush()


_projector: ProjectorProcess | None = None


def on_starting(server: Any) -> None:
    """gunicorn: before the workers; start the projector unless told not to."""
    global _projector  # noqa: PLW0603  # one per master process
    if os.environ.get(RUN_PROJECTOR_SETTING) != "1" or _projector is not None:
        return
    _projector = ProjectorProcess(PROJECTOR_COMMAND)
    if _projector.start():
        server.log.info("the projector has caught up; starting the workers")
    else:
        server.log.warning(
            "the projector has not caught up within %.0f s; starting the workers",
            READY_SECONDS,
        )


def on_exit(server: Any) -> None:
    """gunicorn: the master is exiting; stop the projector."""
    if _projector is not None:
        _projector.stop()
        server.log.info("stopped the projector")


# Where the workers keep their metrics files (prometheus-client's setting).
METRICS_DIR_SETTING = "PROMETHEUS_MULTIPROC_DIR"


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn: a worker has exited; its live gauges stop counting."""
    if os.environ.get(METRICS_DIR_SETTING):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
