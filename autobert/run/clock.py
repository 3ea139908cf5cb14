"""The trial clock: a running trial stops at the search's deadline, far past its prediction, or on a stop request.

:func:`check_deadline` is public (``autobert.check_deadline``): autobert calls
it at every fine-tuning step, and a technique with a long loop of its own
calls it too. The search (:mod:`autobert.study.search`) sets the clock of the
running trial with :func:`running`; a command that trains runs inside
:func:`interruptible`, whose SIGINT and SIGTERM handler calls
:func:`request_stop`. No torch at import.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

#: A running trial that takes this many times its prediction (plus SLACK seconds) is stopped.
OVERRUN = 3.0
SLACK = 30.0


class TrialStopped(Exception):
    """A running trial was stopped by the clock (the search's deadline, or a bad overrun)."""


@dataclass
class Clock:
    """The search's deadline and the running trial's prediction."""

    deadline: float | None = None  # time.monotonic() seconds
    trial_started: float = field(default_factory=time.monotonic)
    predicted: float | None = None

    def remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def check(self) -> None:
        now = time.monotonic()
        if self.deadline is not None and now > self.deadline:
            raise TrialStopped("stopped at the search's time budget")
        if self.predicted is not None:
            limit = OVERRUN * self.predicted + SLACK
            if now - self.trial_started > limit:
                raise TrialStopped(f"stopped after {now - self.trial_started:.0f}s: it ran far past its predicted "
                                   f"{self.predicted:.0f}s (limit {limit:.0f}s)")


_current: Clock | None = None


@contextmanager
def running(clock: Clock) -> Iterator[Clock]:
    """Make ``clock`` the one :func:`check_deadline` consults while a trial runs."""
    global _current
    previous, _current = _current, clock
    try:
        yield clock
    finally:
        _current = previous


_stop_requested = False


def request_stop() -> None:
    """Ask the running trial to stop as if interrupted (:func:`interruptible`'s SIGINT and SIGTERM handler)."""
    global _stop_requested
    _stop_requested = True


def clear_stop() -> None:
    global _stop_requested
    _stop_requested = False


@contextmanager
def interruptible() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM stop the work as Ctrl-C does, and for good.

    Schedulers stop workers with SIGTERM; SIGINT is set too because a process
    a shell starts in the background inherits it ignored, and Ctrl-C (or a
    scheduler's SIGINT) must still stop it cleanly. Each raises
    ``KeyboardInterrupt`` and requests a stop: a ``KeyboardInterrupt`` raised
    while Python runs a finaliser (``__del__``) is printed and dropped, and the
    request makes the next :func:`check_deadline` raise it again. On the way
    out the previous handlers are back and the request is cleared.
    """

    def interrupt(signum: int, frame: Any) -> None:
        request_stop()
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        clear_stop()


def check_deadline() -> None:
    """Raise :class:`TrialStopped` when the running trial is out of time; a no-op outside a timed search.

    autobert calls it at every fine-tuning step; a technique with a long loop
    of its own (a pretraining stage, a generator) calls it too, so that a time
    budget holds while it runs. It also raises ``KeyboardInterrupt`` when a
    stop was requested (Ctrl-C or SIGTERM) and the interrupt itself was lost.
    """
    if _stop_requested:
        raise KeyboardInterrupt
    if _current is not None:
        _current.check()



__all__ = ["Clock", "TrialStopped", "check_deadline", "request_stop", "clear_stop", "running", "interruptible", "OVERRUN",
           "SLACK"]
