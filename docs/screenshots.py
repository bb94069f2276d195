"""Take the docs' screenshots of the Dagster UI in a real headless browser: `make screenshots`.

A throw-away deployment (temporary DAGSTER_HOME, event store and exports) gets the demo's 48 hours
of events and a first generation of the example flows (`dataflow demo`), then
dagster-webserver and dagster-daemon serve it while Debian's `chromium` (apt-get install
chromium) takes each page in SHOTS into docs/images/. Nothing outside the temporary folder and
docs/images/ is touched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
PORT = int(os.environ.get("SCREENSHOTS_PORT", "3917"))
BASE = f"http://127.0.0.1:{PORT}"


def shots(now: dt.datetime) -> dict[str, tuple[str, tuple[int, int]]]:
    """image name -> (UI path, window size)."""
    hour = (now - dt.timedelta(hours=3)).strftime("%Y-%m-%d-%H:00")
    return {
        "lineage.png": ("/asset-groups", (1400, 700)),
        "flow-lineage.png": ("/assets/web_hourly_csv/delivery_report?view=lineage", (1400, 700)),
        "partition-files.png": (
            f"/assets/web_hourly_csv/files?view=partitions&partition={hour.replace(':', '%3A')}",
            (1500, 1000),
        ),
        "delivery-report.png": ("/assets/web_hourly_csv/delivery_report", (1500, 1500)),
    }


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("screenshots need a headless Chromium: apt-get install -y chromium")


def screenshot(browser: str, url: str, size: tuple[int, int], out: Path, profile: Path) -> None:
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--hide-scrollbars",
            f"--window-size={size[0]},{size[1]}",
            "--virtual-time-budget=20000",
            f"--screenshot={out}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )


def wait_for_ui(deadline_s: float = 240) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{BASE}/server_info", timeout=2):
                return
        except OSError:
            time.sleep(1)
    sys.exit(f"the Dagster UI did not answer on {BASE}")


def dismiss_welcome() -> None:
    """The UI greets a new instance with a newsletter dialog: mark it seen (its own mutation)."""
    body = json.dumps({"query": "mutation { setNuxSeen }"}).encode()
    request = urllib.request.Request(f"{BASE}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30):
        pass


def main() -> int:
    browser = chromium()
    root = Path(tempfile.mkdtemp(prefix="dataflow-screenshots-"))
    try:
        (root / "flows").mkdir()
        for path in (REPO / "flows").iterdir():
            shutil.copy(path, root / "flows" / path.name)
        shutil.copy(REPO / "workspace.yaml", root / "workspace.yaml")
        os.environ.update(
            DAGSTER_HOME=str(root / "home"),
            DATAFLOW_EVENTS_DB=str(root / "events.duckdb"),
            DATAFLOW_FLOWS_DIR=str(root / "flows"),
            DATAFLOW_STAGING_DIR=str(root / "staging"),
        )
        os.chdir(root)  # the example flows deliver to ./exports
        from dataflow_assets.cli import main as dataflow
        from dataflow_assets.serve import DagsterServices

        if dataflow(["demo", "--events", "20000"]) != 0:
            sys.exit("dataflow demo failed")
        now = dt.datetime.now(dt.UTC)
        IMAGES.mkdir(parents=True, exist_ok=True)
        with open(root / "services.log", "w") as log:
            services = DagsterServices("workspace.yaml", "127.0.0.1", PORT, output=log, cwd=root)
            try:
                wait_for_ui()
                dismiss_welcome()
                for name, (path, size) in shots(now).items():
                    screenshot(browser, BASE + path, size, IMAGES / name, root / "chromium")
                    print(f"screenshots: {IMAGES / name} ({BASE + path})")
            finally:
                services.stop()
    finally:
        os.chdir(REPO)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
