"""A throwaway PostgreSQL server for the tests: the one in NOTIFIER_TEST_DATABASE_URL, or
one started from the installed binaries in a temp folder on a free port (fsync off)."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import psycopg

from notifier.store.errors import describe, redact

ENV_URL = "NOTIFIER_TEST_DATABASE_URL"
START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections


class PgUnavailable(Exception):
    """Why no PostgreSQL server could be had (the tests skip, or fail in CI, saying so)."""


def find_bindir() -> str | None:
    """The newest installed server's bin folder (Debian layout first, then PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return os.path.dirname(initdb)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class PgServer:
    """A server the tests may create databases on; `stop` only stops one we started."""

    admin_url: str
    datadir: str | None = None
    bindir: str | None = None
    _as_postgres: bool = False
    _numbers: itertools.count[int] = field(default_factory=itertools.count)
    _shared: str | None = None

    @classmethod
    def start(cls) -> PgServer:
        url = os.environ.get(ENV_URL)
        if url:
            server = cls(admin_url=url)
            server._check()
            return server
        bindir = find_bindir()
        if bindir is None:
            raise PgUnavailable(
                "no PostgreSQL server binaries (initdb, pg_ctl) found; install postgresql"
                f" or set {ENV_URL}"
            )
        as_postgres = os.geteuid() == 0  # the server refuses to run as root
        if as_postgres and shutil.which("runuser") is None:
            raise PgUnavailable("running as root and runuser is missing")
        datadir = tempfile.mkdtemp(prefix="notifier-pg-")
        if as_postgres:
            shutil.chown(datadir, user="postgres", group="postgres")
        server = cls(admin_url="", datadir=datadir, bindir=bindir, _as_postgres=as_postgres)
        try:
            server._initdb()
            server._launch()
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, *argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def _initdb(self) -> None:
        assert self.bindir and self.datadir
        done = self._run(
            f"{self.bindir}/initdb",
            "-D",
            f"{self.datadir}/data",
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            timeout=120,
        )
        if done.returncode:
            raise PgUnavailable(f"initdb failed: {_last_line(done)}")

    def _launch(self) -> None:
        assert self.bindir and self.datadir
        last = ""
        for _ in range(3):  # a free port can be taken between the probe and the start
            port = _free_port()
            options = (
                f"-p {port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            done = self._run(
                f"{self.bindir}/pg_ctl",
                "-D",
                f"{self.datadir}/data",
                "-l",
                f"{self.datadir}/server.log",
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT),
                "start",
                timeout=START_TIMEOUT + 10,
            )
            if done.returncode == 0:
                self.admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
                self._check()
                return
            last = self._log_tail() or _last_line(done)
        raise PgUnavailable(f"the server did not start: {last}")

    def _log_tail(self) -> str:
        try:
            with open(f"{self.datadir}/server.log", encoding="utf-8") as log:
                lines = [line.strip() for line in log if line.strip()]
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def _check(self) -> None:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=10) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            reason = redact(str(exc), self.admin_url)
            raise PgUnavailable(f"cannot connect to {describe(self.admin_url)}: {reason}") from None

    def create_database(self) -> str:
        """A fresh empty database; returns its URL."""
        name = f"test_{os.getpid()}_{next(self._numbers)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return _with_database(self.admin_url, name)

    def fresh_database(self) -> str:
        """An empty database for one test: the session's own test database, its schema
        dropped and made anew (much quicker than CREATE DATABASE), with any session a
        previous test left behind ended first."""
        if self._shared is None:
            self._shared = self.create_database()
        with psycopg.connect(self._shared, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid != pg_backend_pid()"
            )
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
        return self._shared

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self._shared is not None and self.datadir is None:  # a server we did not start
            self.drop_database(self._shared)
            self._shared = None
        if self.datadir is None:
            return
        if self.bindir and os.path.exists(f"{self.datadir}/data/postmaster.pid"):
            self._run(
                f"{self.bindir}/pg_ctl", "-D", f"{self.datadir}/data", "-m", "immediate", "stop",
                timeout=60,
            )  # fmt: skip
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.datadir = None


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit status {done.returncode}"
