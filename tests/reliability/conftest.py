"""Real processes for reliability tests: a uvicorn API server, a worker, and throwaway Redis and
PostgreSQL servers of our own (never the shared ones, which other people's tests use)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN

REPO = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PG_BIN = Path("/usr/local/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class RedisServer:
    """Our own redis-server without persistence: a restart loses everything it held."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=(self.folder / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port)

    def stop(self) -> None:
        """An abrupt outage: SIGKILL, so nothing is flushed or handed over."""
        _stop(self.proc, signal.SIGKILL)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip(f"redis-server binary not found at {REDIS_SERVER}")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PostgresCluster:
    """A private PostgreSQL cluster (initdb + pg_ctl) on a free port; runs as `postgres` under root."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pm-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.root, "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.root / "pg.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    for binary in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / binary).exists():
            pytest.skip(f"PostgreSQL binary {PG_BIN / binary} not found")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root without runuser: initdb cannot run")
    cluster = PostgresCluster()
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def service_env(data_dir: Path, encoder_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATA_DIR": str(data_dir),
        "ENCODER": str(encoder_dir),
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "LOAD_DEMO_CATALOGUE": "false",
        "INGEST_CHUNK_ROWS": "50",
        "INDEX_SYNC_INTERVAL": "0.2",
        "JOB_LEASE_SECONDS": "2",
        "TORCH_THREADS": "1",
        "LOG_LEVEL": "INFO",
    }
    for key in ("DATABASE_URL", "REDIS_URL", "QUEUE_NAME"):
        env.pop(key, None)
    env.update(extra)
    return env


class ApiServer:
    """`productmatch serve` (uvicorn) as a subprocess that can be SIGKILLed and restarted."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=timeout)

    def start(self, ready_timeout: float = 90.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, f"server exited:\n{self.tail()}"
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {ready_timeout}s:\n{self.tail()}")

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "the server is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM, 30)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def unhandled_errors(self) -> int:
        return self.log.read_text(errors="replace").count("unhandled error on")


class WorkerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            cwd=REPO,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM, 20)


@pytest.fixture
def processes() -> Iterator[list]:
    """Register ApiServer / WorkerProcess objects here; each is stopped at teardown."""
    started: list = []
    yield started
    for proc in reversed(started):
        proc.stop()


def wait_job_http(client: httpx.Client, job_id: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        res = client.get(f"/v1/jobs/{job_id}")
        if res.status_code == 200:
            body = res.json()
            if body["state"] in ("completed", "completed_with_errors", "failed"):
                return body
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {body}")
