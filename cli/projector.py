"""`bank projector`: keep the read models current, as a process of its own."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

import click

from bank.projections import BATCH_SIZE, Ledger
from bank.projections.runner import POLL_SECONDS, Projector
from cli.session import BankSession, pass_session

if TYPE_CHECKING:
    from types import FrameType

READY_LINE = "Projector running, caught up with the log; SIGTERM or Ctrl-C stops it."


@click.command()
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=BATCH_SIZE,
    show_default=True,
    help="Events applied per transaction.",
)
@click.option(
    "--poll",
    "poll_seconds",
    type=click.FloatRange(0.001, 10.0),
    default=POLL_SECONDS,
    show_default=True,
    help="Seconds between looks at the log when idle (SQLite; PostgreSQL is woken).",
)
@click.option("--once", is_flag=True, help="Catch up with the log, then exit.")
@pass_session
def projector(
    session: BankSession, *, batch_size: int, poll_seconds: float, once: bool
) -> None:
    """Apply new events to the read models as they are recorded, until stopped.

    Resumes from the stored position; several may run at once. SIGTERM or
    Ctrl-C stops it after the batch in progress.
    """
    runner = Projector(Ledger(session.app).writer, batch_size, poll_seconds)
    if once:
        applied = runner.run_once()
        click.echo(f"Applied {applied:,} events; the read models are current.")
        return
    stop = threading.Event()

    def stop_running(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def caught_up() -> None:
        # `bank serve` waits for this line before it starts its workers.
        click.echo(READY_LINE)

    signal.signal(signal.SIGTERM, stop_running)
    signal.signal(signal.SIGINT, stop_running)
    runner.run(stop, ready=caught_up)
    click.echo(f"Projector stopped after applying {runner.applied:,} events.", err=True)
