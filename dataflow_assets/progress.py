"""Progress of long work, for whoever listens (the CLI's progress bars).

Library code reports ``(stage, done, total)``; the CLI installs a listener while it runs a
generation in-process. With no listener, reports are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Listener = Callable[[str, int, int], None]
_listener: ContextVar[Listener | None] = ContextVar("dataflow_progress", default=None)


def report(stage: str, done: int, total: int) -> None:
    listener = _listener.get()
    if listener is not None:
        listener(stage, done, total)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)
