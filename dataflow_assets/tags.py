"""Run tags: how a run says what it exports.

Generation runs carry ``dataflow/generation`` and their window. Every other run of a flow's files
asset (a UI backfill, a materialization of past partitions, ``dataflow regenerate``) is a
regeneration (SPEC 7). Only live generation runs carry ``dataflow/flow``: dagster.yaml limits
those to one per flow, while regenerations may run beside the live flow.
"""

FLOW = "dataflow/flow"
GENERATION = "dataflow/generation"
WINDOW_FROM = "dataflow/window_from"
WINDOW_TO = "dataflow/window_to"
PLANNED_AT = "dataflow/planned_at"
ATTEMPT = "dataflow/attempt"
#: on a run that continues a destination written from another event store (--adopt-destination)
ADOPT = "dataflow/adopt_destination"
REGENERATION = "dataflow/regeneration"
WATERMARK = "dataflow/watermark"
PID = "dataflow/pid"
HOST = "dataflow/host"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
