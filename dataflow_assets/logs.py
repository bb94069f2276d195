"""Logging that never carries a secret, at any level.

The network libraries log what they send at DEBUG: botocore prints every request's headers,
the AWS session token (``X-Amz-Security-Token``) among them, and the signed ``Authorization``;
urllib3, s3transfer and paramiko log connections and transport details. Whatever level
``DATAFLOW_LOG_LEVEL`` (or Dagster's ``python_logs``) gives the root logger, these loggers keep
``WARNING``: their debug output would reach the terminal, the run's event log and Dagster's
compute logs (captured stderr). Our own messages are written for people and never hold a secret
(destinations scrub theirs).
"""

from __future__ import annotations

import logging

#: Loggers of libraries that log credentials or request headers below WARNING.
LIBRARY_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "paramiko", "aiobotocore")


def quiet_library_loggers(level: int = logging.WARNING) -> None:
    """Set ``LIBRARY_LOGGERS`` (and so their children) to ``level`` at least: below it, nothing
    of theirs is emitted, whatever the root logger's level. Idempotent."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < level:
            logger.setLevel(level)
