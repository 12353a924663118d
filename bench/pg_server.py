"""A throwaway PostgreSQL for the benchmarks: tests/pg.py's server (started from the
installed binaries as the postgres user on a free port, or NOTIFIER_TEST_DATABASE_URL's),
with a database of its own and a restart for failover runs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pg import START_TIMEOUT, PgServer, PgUnavailable

__all__ = ["BenchPg", "PgUnavailable"]


class BenchPg:
    """`start()`, then `url` is an empty database; `restart()` stops the server (fast
    mode: sessions are cut) and starts it again; `stop()` removes what we started."""

    def __init__(self) -> None:
        self.server: PgServer | None = None
        self.url = ""

    def start(self) -> BenchPg:
        self.server = PgServer.start()  # PgUnavailable says why not
        self.url = self.server.create_database()
        return self

    @property
    def can_restart(self) -> bool:
        """Only a server we started ourselves (not NOTIFIER_TEST_DATABASE_URL's)."""
        return self.server is not None and self.server.datadir is not None

    def restart(self) -> float:
        """Stop and start the server; returns the seconds it took."""
        server = self.server
        assert server is not None and server.bindir and server.datadir
        began = time.monotonic()
        done = server._run(
            f"{server.bindir}/pg_ctl",
            "-D",
            f"{server.datadir}/data",
            "-l",  # without it the server would keep pg_ctl's output pipe open
            f"{server.datadir}/server.log",
            "-m",
            "fast",
            "-w",
            "-t",
            str(START_TIMEOUT),
            "restart",  # with the options of the first start (postmaster.opts)
            timeout=START_TIMEOUT + 10,
        )
        if done.returncode:
            raise PgUnavailable(f"pg_ctl restart failed: {done.stderr.strip()[-300:]}")
        return time.monotonic() - began

    def stop(self) -> None:
        if self.server is not None:
            if self.url and self.server.datadir is None:  # a server we did not start
                self.server.drop_database(self.url)
            self.server.stop()
            self.server = None
