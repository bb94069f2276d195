"""The retry helper on its own: what is retried, how long, and what the messages say."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflow_assets.destinations import DestinationError
from dataflow_assets.destinations.retry import RetryPolicy, retrying, scrub

POLICY = RetryPolicy(attempts=4, base_delay=1.0, max_delay=3.0, deadline=60.0)


def _classify(exc: BaseException) -> DestinationError:
    return DestinationError(f"dest: {exc}", permanent=isinstance(exc, PermissionError))


class Flaky:
    """Fails ``failures`` times with ``error``, then returns "done"."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


def test_transient_faults_are_retried_with_a_reset_before_each_attempt() -> None:
    operation, pauses, resets = Flaky(2, ConnectionResetError("reset")), [], []
    result = retrying(
        operation,
        policy=POLICY,
        classify=_classify,
        reset=lambda: resets.append(operation.calls),
        sleep=pauses.append,
    )
    assert result == "done"
    assert operation.calls == 3
    assert resets == [1, 2]
    assert len(pauses) == 2
    assert all(0 <= p <= 3.0 for p in pauses)


def test_permanent_faults_are_raised_at_once() -> None:
    operation, pauses = Flaky(5, PermissionError("denied")), []
    with pytest.raises(DestinationError) as info:
        retrying(operation, policy=POLICY, classify=_classify, sleep=pauses.append)
    assert info.value.permanent
    assert operation.calls == 1
    assert pauses == []
    assert isinstance(info.value.__cause__, PermissionError)


def test_a_destination_error_raised_inside_keeps_its_verdict() -> None:
    operation = Flaky(5, DestinationError("dest: folder x does not exist", permanent=True))
    with pytest.raises(DestinationError, match="folder x does not exist"):
        retrying(operation, policy=POLICY, classify=_classify, sleep=lambda _: None)
    assert operation.calls == 1


def test_gives_up_after_the_attempts(caplog: pytest.LogCaptureFixture) -> None:
    operation = Flaky(10, TimeoutError("timed out"))
    with pytest.raises(DestinationError) as info:
        retrying(operation, policy=POLICY, classify=_classify, sleep=lambda _: None)
    assert not info.value.permanent
    assert operation.calls == 4
    assert str(info.value).startswith("dest: timed out (gave up after 4 attempts in ")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert warnings[0].startswith("dest: timed out; retrying in ")


def test_gives_up_when_the_next_pause_would_pass_the_deadline() -> None:
    policy = RetryPolicy(attempts=100, base_delay=10.0, max_delay=10.0, deadline=0.0)
    operation = Flaky(10, TimeoutError("timed out"))
    with pytest.raises(DestinationError, match="gave up after 1 attempt in"):
        retrying(operation, policy=policy, classify=_classify, sleep=lambda _: None)
    assert operation.calls == 1


def test_secrets_never_reach_messages_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-Pa55"
    operation = Flaky(10, ConnectionError(f"server said: bad login {secret}"))
    with pytest.raises(DestinationError) as info:
        retrying(
            operation,
            policy=POLICY,
            classify=_classify,
            secrets=(None, "", secret),
            sleep=lambda _: None,
        )
    assert secret not in str(info.value)
    assert "***" in str(info.value)
    assert secret not in caplog.text


def test_scrub() -> None:
    assert scrub("a pw b pw", ["pw", None, ""]) == "a *** b ***"


@given(attempt=st.integers(min_value=1, max_value=60))
def test_pauses_grow_exponentially_up_to_the_cap(attempt: int) -> None:
    ceiling = min(POLICY.max_delay, POLICY.base_delay * 2 ** (attempt - 1))
    assert 0.0 <= POLICY.delay(attempt) <= ceiling
