"""The landing zone: event files dropped into a folder or an S3 prefix, ingested by a sensor.

config.py        DATAFLOW_LANDING* / landing.yaml -> LandingConfig (validated)
files.py         LandedFile and the name rule (what is never picked up)
local.py, s3.py  the listing and fetching of a local folder and of an S3 prefix
ledger.py        the store's ledger of ingested (and unreadable) files
loader.py        ingest a batch of landed files, each exactly once
sensor.py        the settle rule, the cursor, RunRequests
events_asset.py  the ``events`` asset: a landing run's materialization
"""
