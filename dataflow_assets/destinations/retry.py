"""Bounded retries with exponential backoff and full jitter, shared by the remote destinations.

A destination wraps each remote operation in ``retrying``: the operation's exception is turned
into a ``DestinationError`` by the destination's own classifier (which knows whether a fault is
permanent), permanent faults are raised at once, transient ones are retried after
``reset`` (drop the connection so the next attempt reconnects) until the attempts or the time
budget run out. Messages are scrubbed of the destination's secrets before they are logged or
raised.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from dataflow_assets.destinations.base import DestinationError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How long a transient fault is worth waiting out.

    Attempt ``n`` (from 1) that fails transiently waits a random delay in
    ``[0, min(max_delay, base_delay * 2**(n-1))]`` ("full jitter", so many exporters hitting one
    server do not retry in lockstep), as long as fewer than ``attempts`` attempts were made and
    the next attempt would start within ``deadline`` seconds of the first.
    """

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 20.0
    deadline: float = 180.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The pause after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return (rng or random).uniform(0.0, ceiling)


DEFAULT_RETRY = RetryPolicy()


def scrub(message: str, secrets: Iterable[str | None]) -> str:
    """``message`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message


def retrying(
    operation: Callable[[], T],
    *,
    policy: RetryPolicy,
    classify: Callable[[BaseException], DestinationError],
    reset: Callable[[], None] | None = None,
    secrets: Iterable[str | None] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``operation`` until it succeeds, a fault is permanent, or ``policy`` gives up.

    ``classify`` maps any exception of the operation to a DestinationError naming the
    destination, the action and the cause (a DestinationError raised by the operation is kept as
    it is). ``reset`` runs before each new attempt and must not raise. The error raised in the
    end is chained to the last underlying exception; its message never contains ``secrets``.
    """
    secrets = tuple(secrets)
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return operation()
        except Exception as exc:
            error = exc if isinstance(exc, DestinationError) else classify(exc)
            message = scrub(str(error), secrets)
            if error.permanent:
                raise DestinationError(message, permanent=True) from exc
            pause = policy.delay(attempt)
            elapsed = time.monotonic() - started
            if attempt >= policy.attempts or elapsed + pause > policy.deadline:
                raise DestinationError(
                    f"{message} (gave up after {attempt} attempt{'s' if attempt > 1 else ''} "
                    f"in {elapsed:.1f}s)",
                    permanent=False,
                ) from exc
            # No exc_info: tracebacks of network libraries can quote the request, and the
            # message already says what failed and why.
            logger.warning(
                "%s; retrying in %.1fs (attempt %d of %d)", message, pause, attempt, policy.attempts
            )
        if reset is not None:
            reset()
        sleep(pause)
