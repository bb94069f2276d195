"""``dataflow ARGS...`` with test-sized destination retries (3 attempts, 50-200 ms apart, 10 s
timeouts): ``python -m dataflow_assets_tests.faults.quickcli export ...``. The production policy
only differs in time; tests that go through many retried failures use this to stay fast."""

from __future__ import annotations

import sys
from typing import Any

from dataflow_assets.destinations.retry import RetryPolicy

FAST = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2, deadline=30.0)
TIMEOUT = 10.0


def install() -> None:
    from dataflow_assets import quick_export
    from dataflow_assets.destinations.resources import DestinationResource

    def fast(destination: Any) -> Any:
        destination.retry = FAST
        if hasattr(destination, "timeout"):
            destination.timeout = TIMEOUT
        return destination

    build = DestinationResource.destination
    plain = quick_export.plain_destination

    def destination_for(self: DestinationResource) -> Any:
        return fast(build(self))

    DestinationResource.destination = destination_for  # type: ignore[method-assign]
    quick_export.plain_destination = lambda flow: fast(plain(flow))  # direct_export's


if __name__ == "__main__":
    install()
    from dataflow_assets.cli import main

    sys.exit(main(sys.argv[1:]))
