"""Failure streaks: one alert when a flow starts failing, one when it recovers.

A *subject* is what fails and recovers on its own: a flow's generations (``<flow>``) or one of
its checks (``<flow>:completeness``). Its state is the sensor's cursor (``AlertCursor``), which
Dagster stores with the sensor's ticks: a restarted daemon or webserver continues the streak
instead of alerting again. Alerts that could not be sent stay in the cursor (``pending``) with
the channels still owed, and are retried at the next tick; a channel that took one is never
sent it twice.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["failing", "recovered"]
#: Alerts kept for retry at most; older ones are dropped (and logged) past this.
MAX_PENDING = 100
#: Runs are read back this far before the cursor's position, so that runs whose update times
#: tie or commit out of order are not missed; ``seen`` keeps them from being counted twice.
OVERLAP_SECONDS = 10.0


@dataclass(frozen=True)
class Alert:
    """What someone is told. Every field is free of secrets (``scrub``-ed by the sensor)."""

    flow: str
    what: str  # "generation" or "check completeness" / "check freshness"
    status: Status
    window: str  # "(from, to]" of the insertion sequence, or the check's watermark
    destination: str  # e.g. s3://bucket/folder, sftp://user@host:22/folder
    cause: str
    run_id: str
    at: str  # ISO 8601 UTC

    @property
    def subject(self) -> str:
        verb = "is failing" if self.status == "failing" else "recovered"
        return f"[dataflow] {self.flow}: {self.what} {verb}"

    def text(self) -> str:
        lines = [
            self.subject,
            f"flow: {self.flow}",
            f"window: {self.window}",
            f"destination: {self.destination}",
            f"run: {self.run_id}",
            f"at: {self.at}",
        ]
        if self.status == "failing":
            lines.append(f"cause: {self.cause}")
            lines.append("No further alert for this flow until it recovers.")
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON body: ``text`` for Slack-like tools, the fields for the others."""
        return {"text": self.text(), **asdict(self)}


@dataclass
class Pending:
    alert: Alert
    channels: list[str]


@dataclass
class AlertCursor:
    """The sensor's memory, serialized as its cursor.

    ``after``: update timestamp (epoch seconds) of the newest run looked at; ``seen``: ids of the
    runs looked at within ``OVERLAP_SECONDS`` of it; ``failing``: subject -> ISO time its streak
    started; ``last``: subject -> creation timestamp of the newest run that told its state (an
    older run seen late never reopens a streak); ``pending``: alerts not yet sent everywhere.
    """

    after: float
    seen: list[str] = field(default_factory=list)
    failing: dict[str, str] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    pending: list[Pending] = field(default_factory=list)

    @classmethod
    def start(cls, now: dt.datetime | None = None) -> AlertCursor:
        """A first cursor: runs finished before ``now`` are history, not news."""
        return cls(after=(now or dt.datetime.now(dt.UTC)).timestamp())

    def observe(self, subject: str, created: float, failed: bool) -> Status | None:
        """Record one finished run's verdict on ``subject``: the alert it calls for, if any."""
        if created < self.last.get(subject, float("-inf")):
            return None
        self.last[subject] = created
        if failed and subject not in self.failing:
            self.failing[subject] = dt.datetime.fromtimestamp(created, dt.UTC).isoformat()
            return "failing"
        if not failed and subject in self.failing:
            del self.failing[subject]
            return "recovered"
        return None

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> AlertCursor | None:
        """The cursor, or None when there is none yet (or it is not ours)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                after=float(data["after"]),
                seen=list(data.get("seen", [])),
                failing=dict(data.get("failing", {})),
                last={k: float(v) for k, v in data.get("last", {}).items()},
                pending=[
                    Pending(Alert(**p["alert"]), list(p["channels"]))
                    for p in data.get("pending", [])
                ],
            )
        except (ValueError, KeyError, TypeError):
            return None
