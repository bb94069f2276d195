"""Event factories for the fault tests: several sites and partitions, late events, privacy
refusals, and optionally an incompressible payload (so files are big enough to cut mid-upload)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from dataflow_assets_tests.support import T0, event


def traffic(
    n: int, first: int = 1, *, payload: int = 0, spread_minutes: int = 180, seed: int = 0
) -> list[dict[str, Any]]:
    """``n`` events with ids ``first..first+n-1``; every 11th one is three days late."""
    rng = random.Random(seed * 1_000_003 + first)
    out = []
    for k in range(first, first + n):
        at = T0 + dt.timedelta(minutes=(k * 7) % spread_minutes, seconds=k % 60)
        if k % 11 == 0:
            at -= dt.timedelta(days=3)
        props: dict[str, Any] = {
            "event_name": "page.display" if k % 2 else "click.action",
            "page": f"page {k}",
            "visitor_privacy_consent": k % 13 != 0,
        }
        if payload:
            props["blob"] = rng.randbytes(payload // 2).hex()
        out.append(event(k, at, site_id=1 + k % 3, **props))
    return out
