"""Data Flow on Dagster: raw analytics event exports."""

from dataflow_assets.arrow_pool import prefer_jemalloc
from dataflow_assets.logs import quiet_library_loggers

# On import, so the CLI, the code location and every run process are covered, however they
# configure logging afterwards (a library that sets its own logger's level later is not), and
# before anything imports pyarrow (its C++ memory pool is chosen then).
prefer_jemalloc()
quiet_library_loggers()
