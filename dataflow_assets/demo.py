"""Demo traffic: realistic Piano Analytics-like events for the demo and the benchmarks.

Three sites (a media site, a shop, an app), 40+ standard properties and a few custom ones,
about 10% of events without consent, a few late events hours old, and a few duplicates as
collectors produce them (the same event_id twice).

While serving, the demo's live traffic goes through the landing zone (``drop_traffic``): one
NDJSON file per interval in ``data/landing/``, written under a temporary name then renamed, that
the landing sensor ingests (``serve_environment`` configures it for the UI's process).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

SITES = {1001: "media", 1002: "shop", 1003: "app"}
EVENTS = {
    "media": ["page.display", "click.action", "click.navigation", "av.play", "av.pause"],
    "shop": [
        "page.display",
        "product.display",
        "product.add_to_cart",
        "cart.display",
        "transaction.confirmation",
        "click.action",
    ],
    "app": ["page.display", "click.action", "app.start", "publisher.impression"],
}
CHAPTERS = {
    "media": [
        ("news", ["politics", "economy", "world"]),
        ("sport", ["football", "tennis"]),
        ("culture", ["cinema", "music"]),
    ],
    "shop": [
        ("catalog", ["shoes", "shirts", "bags"]),
        ("checkout", ["cart", "payment"]),
        ("account", ["orders"]),
    ],
    "app": [("home", ["feed"]), ("settings", ["privacy", "profile"])],
}
SOURCES = [
    ("Direct traffic", ""),
    ("Search engines", "google"),
    ("Search engines", "bing"),
    ("Social media", "facebook"),
    ("Social media", "linkedin"),
    ("Campaigns", "newsletter"),
    ("Referrer sites", "partner.example"),
]
DEVICES = [
    ("Desktop", "Apple", "Mac", "macOS", "14"),
    ("Desktop", "Dell", "XPS", "Windows", "11"),
    ("Mobile Phone", "Apple", "iPhone 15", "iOS", "18.1"),
    ("Mobile Phone", "Samsung", "Galaxy S24", "Android", "15"),
    ("Tablet", "Apple", "iPad Air", "iPadOS", "18.1"),
]
BROWSERS = [
    ("Chrome", "131"),
    ("Safari", "18"),
    ("Firefox", "133"),
    ("Edge", "131"),
    ("Samsung Internet", "26"),
]
GEO = [
    ("France", "Île-de-France", "Paris", "Europe"),
    ("France", "Auvergne-Rhône-Alpes", "Lyon", "Europe"),
    ("Germany", "Berlin", "Berlin", "Europe"),
    ("United States", "New York", "New York", "North America"),
    ("Spain", "Catalonia", "Barcelona", "Europe"),
    ("Japan", "Tokyo", "Tōkyō", "Asia"),
]
PRODUCTS = [
    ("SKU-1001", 'Trail shoes "Alpine"', "shoes", 89.9),
    ("SKU-2002", "Linen shirt, blue", "shirts", 45.0),
    ("SKU-3003", "Leather bag", "bags", 129.5),
    ("SKU-4004", "Socks; 3 pairs", "shoes", 12.99),
]


class TrafficGenerator:
    """Deterministic for a seed. ``events(n, now)`` yields hit dictionaries ready for NDJSON."""

    def __init__(
        self, seed: int = 7, late_share: float = 0.02, duplicate_share: float = 0.005
    ) -> None:
        self.rng = random.Random(seed)
        self.late_share = late_share
        self.duplicate_share = duplicate_share
        self.visitors = [f"v{self.rng.getrandbits(40):010x}" for _ in range(2000)]

    def _event_id(self) -> int:
        return self.rng.getrandbits(62)

    def event(self, at: dt.datetime) -> dict:
        rng = self.rng
        site_id = rng.choice(list(SITES))
        kind = SITES[site_id]
        chapter1, subs = rng.choice(CHAPTERS[kind])
        chapter2 = rng.choice(subs)
        page = f"{chapter2}_{rng.randint(1, 40)}"
        src, src_detail = rng.choice(SOURCES)
        device_type, brand, model, os_name, os_version = rng.choice(DEVICES)
        browser, browser_version = rng.choice(BROWSERS)
        country, region, city, continent = rng.choice(GEO)
        visitor = rng.choice(self.visitors)
        consent = rng.random() >= 0.10
        hit: dict = {
            "hit_time_utc": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
            "event_id": self._event_id(),
            "site_id": site_id,
            "event_name": rng.choice(EVENTS[kind]),
            "visitor_id": visitor,
            "visit_id": f"{visitor}-{at:%Y%m%d%H}",
            "visit_time": at.replace(minute=0, second=0, microsecond=0).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "visitor_new": rng.random() < 0.3,
            "visitor_ip": f"192.0.2.{rng.randint(1, 254)}",
            "visitor_privacy_consent": consent,
            "visitor_privacy_mode": "optin" if consent else rng.choice(["optout", "exempt"]),
            "page": page,
            "page_chapter1": chapter1,
            "page_chapter2": chapter2,
            "page_chapter3": rng.choice([None, "top", "detail"]),
            "page_full_name": f"{chapter1}::{chapter2}::{page}",
            "page_url": f"https://{kind}.example.com/{chapter1}/{chapter2}/{page}",
            "page_duration": rng.randint(1, 600),
            "src": src,
            "src_detail": src_detail or None,
            "src_medium": rng.choice(["organic", "cpc", "email", None]),
            "src_campaign": rng.choice([None, None, "black_friday", "winter_sale"]),
            "device_type": device_type,
            "device_brand": brand,
            "device_model": model,
            "device_screen_width": rng.choice([390, 768, 1440, 1920]),
            "device_screen_height": rng.choice([844, 1024, 900, 1080]),
            "os": os_name,
            "os_version": os_version,
            "browser": browser,
            "browser_version": browser_version,
            "browser_language": rng.choice(["fr-FR", "en-US", "de-DE", "es-ES", "ja-JP"]),
            "geo_country": country,
            "geo_region": region,
            "geo_city": city,
            "geo_continent": continent,
            "click": None,
            "click_chapter1": None,
            "ise_keyword": None,
            "user_id": rng.choice([None, None, None, f"u{rng.randint(1, 500)}"]),
            "app_version": "5.2.1" if kind == "app" else None,
            "custom_ab_test": rng.choice(["A", "B", None]),
            "custom_scroll_depth": round(rng.random(), 3),
        }
        if hit["event_name"].startswith("click."):
            hit["click"] = rng.choice(["subscribe", "share", "menu, open", 'search "deals"'])
            hit["click_chapter1"] = chapter1
        if kind == "shop":
            product, name, category, price = rng.choice(PRODUCTS)
            hit.update(
                {
                    "product_id": product,
                    "product_name": name,
                    "product_category1": category,
                    "product_pricetaxincluded": price,
                    "product_quantity": rng.randint(1, 3),
                    "cart_id": f"c{rng.randint(1, 3000)}",
                }
            )
            if hit["event_name"] == "transaction.confirmation":
                hit["transaction_id"] = f"t{self._event_id() % 10**9}"
                hit["custom_loyalty_tier"] = rng.choice(["bronze", "silver", "gold"])
        if src == "Search engines":
            hit["ise_keyword"] = rng.choice(
                ["running shoes", "météo paris", "résumé", "news\ttoday"]
            )
        return {k: v for k, v in hit.items() if v is not None}

    def events(self, count: int, start: dt.datetime, end: dt.datetime) -> Iterator[dict]:
        """``count`` events with hit times spread over ``[start, end)``, a few of them late
        (hours before ``start``) and a few duplicated."""
        span = (end - start).total_seconds()
        for _ in range(count):
            at = start + dt.timedelta(seconds=self.rng.random() * span)
            if self.rng.random() < self.late_share:
                at -= dt.timedelta(hours=self.rng.uniform(1, 30))
            hit = self.event(at)
            yield hit
            if self.rng.random() < self.duplicate_share:
                yield dict(hit)


def write_ndjson(path: Path, events: Iterator[dict]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(event, ensure_ascii=False) + "\n")
            count += 1
    return count


#: The demo's landing folder, under the project (like its store, data/events.duckdb).
DEMO_LANDING = Path("data/landing")
#: The landing sensor of the demo: running, a tick every 5 s, a file picked up after 1 s.
DEMO_LANDING_ENV = {
    "DATAFLOW_LANDING_SENSOR": "running",
    "DATAFLOW_LANDING_INTERVAL_SECONDS": "5",
    "DATAFLOW_LANDING_SETTLE_SECONDS": "1",
}


def demo_landing(environ: dict[str, str] | None = None) -> Path:
    """The folder the demo drops its traffic into: ``DATAFLOW_LANDING`` when it is a local
    folder, else ``data/landing``."""
    env = os.environ if environ is None else environ
    url = env.get("DATAFLOW_LANDING", "").strip()
    return Path(url if url and "://" not in url else DEMO_LANDING).resolve()


def serve_environment(landing: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the demo's Dagster process: its landing sensor watches ``landing``
    (settings already in the environment win, except the folder itself)."""
    env = dict(os.environ if environ is None else environ)
    for key, value in DEMO_LANDING_ENV.items():
        env.setdefault(key, value)
    env["DATAFLOW_LANDING"] = str(landing)
    return env


def drop_traffic(folder: Path, events: Iterator[dict], at: dt.datetime) -> tuple[Path, int]:
    """Drop ``events`` into the landing ``folder`` as one NDJSON file named for ``at``: written
    as ``.NAME.tmp`` (never picked up), then renamed (atomic). The file and its event count."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"traffic-{at:%Y%m%dT%H%M%S%f}Z.ndjson"
    temporary = folder / f".{name}.tmp"
    count = write_ndjson(temporary, events)
    final = folder / name
    os.replace(temporary, final)
    return final, count
