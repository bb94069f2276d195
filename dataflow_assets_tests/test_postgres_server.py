"""The test PostgreSQL server itself: the fixture every PostgreSQL test stands on."""

from __future__ import annotations

import os
import pwd

import psycopg2
import pytest

from dataflow_assets_tests.servers import PG_OS_USER, PostgresServer


def test_the_server_takes_passwords_over_tcp_and_runs_unprivileged(
    postgres: PostgresServer, pg_database: str
) -> None:
    conn = postgres.connect(pg_database)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT current_database(), inet_server_port(), current_setting('data_directory')"
        )
        assert cur.fetchone() == (pg_database, postgres.port, str(postgres.data_dir))
    conn.close()
    owner = pwd.getpwuid(postgres.data_dir.stat().st_uid).pw_name
    assert owner == (PG_OS_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host=postgres.host,
            port=postgres.port,
            user=postgres.user,
            password="wrong",
            dbname=pg_database,
        )


def test_each_test_gets_its_own_database(postgres: PostgresServer, pg_database: str) -> None:
    conn = postgres.connect(pg_database)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert cur.fetchone() == (0,)
    conn.close()
