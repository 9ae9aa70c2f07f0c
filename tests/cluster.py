"""Real `manage.py qcluster` processes on the test database, for the cluster tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"

# The same scaled-down timings as the `fast_sync` fixture, plus short leases
# so that a killed worker's claims are taken over within seconds.
CLUSTER_ENV = {
    "SYNC_REQUEST_TIMEOUT": "0.5", "SYNC_CONNECT_TIMEOUT": "0.5", "SYNC_MAX_ATTEMPTS": "5", "SYNC_MAX_WAIT": "10",
    "SYNC_MAX_OUTAGE": "20",
    "SYNC_BACKOFF_BASE": "0.05", "SYNC_BACKOFF_CAP": "0.5", "SYNC_LEASE_SECONDS": "2", "SYNC_PAGE_SIZE": "100",
    "Q_WORKERS": "2", "Q_TIMEOUT": "60", "LOG_LEVEL": "info",
}


def test_database_url() -> str:
    """The URL of the database this test session uses (pytest-django's test database)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    host = db["HOST"] or "localhost"
    return f"postgres://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


class Cluster:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / f"qcluster-{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,  # its own process group: kill it whole
        )

    def kill(self) -> None:
        """SIGKILL the cluster and every worker it spawned, as a crash would."""
        self._signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM and wait for a clean stop; kill if it will not stop.

        Only the main process gets the signal: it stops its workers itself
        (signalling the whole group makes django-q2 hang on its way out).
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass


class ClusterFactory:
    """Start clusters that share the test database and one queue name of their own."""

    def __init__(self) -> None:
        self.queue = f"cs-test-{uuid.uuid4().hex[:8]}"
        self.clusters: list[Cluster] = []

    def env(self, **overrides: str) -> dict[str, str]:
        return {**os.environ, **CLUSTER_ENV, "DATABASE_URL": test_database_url(), "Q_CLUSTER_NAME": self.queue,
                **overrides}

    def start(self, **env: str) -> Cluster:
        cluster = Cluster(f"{self.queue}-{len(self.clusters)}", self.env(**env))
        self.clusters.append(cluster)
        return cluster

    def stop_all(self) -> None:
        for cluster in self.clusters:
            cluster.stop()
