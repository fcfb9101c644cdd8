"""Fixtures for every test folder: a throw-away PostgreSQL cluster (``tests/pg.py``), started once
per session by the first test that asks for it."""

from __future__ import annotations

import dataclasses

import pytest

from tests.pg import Cluster, find_bindir


@pytest.fixture(scope="session")
def pg_cluster():
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql: "
                    "run `make setup` (installs Debian's postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is not installed: run `make setup`")
    pytest.importorskip("psycopg_pool", reason="psycopg-pool is not installed: run `make setup`")
    cluster = Cluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@dataclasses.dataclass
class PgSchema:
    """One test's own schema in the cluster's test database."""

    cluster: Cluster
    name: str

    def dsn(self, options: str = "") -> str:
        """Without password: pass ``password`` or set $VOICEBOT_PG_PASSWORD."""
        return self.cluster.dsn(self.name, options=options)

    @property
    def password(self) -> str:
        return self.cluster.password

    def admin(self, sql: str) -> list[tuple]:
        """One statement as the superuser, this schema first on the search path."""
        return self.cluster.admin(sql, self.name)

    def files(self) -> list:
        return self.cluster.schema_files(self.name)


@pytest.fixture
def pg_schema(pg_cluster) -> PgSchema:
    """A fresh schema of its own for one test, owned by the (non-superuser) app role."""
    return PgSchema(pg_cluster, pg_cluster.new_schema())
