"""What a platform call is given and what it cost: the client's settings, and the counters of a call."""
from __future__ import annotations

from dataclasses import dataclass, field

from syncer.platforms import DEFAULT_PLATFORM


@dataclass
class CallStats:
    """What one logical call (or a whole listing) cost, retries included."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    timeouts: int = 0
    pages: int = 0
    last_status: int | None = None
    last_latency_ms: int | None = None  # the platform's own time on the last try, not our waiting


@dataclass
class ClientSettings:
    base_url: str
    email: str
    password: str = field(repr=False)
    client_id: str
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    max_attempts: int = 5
    max_wait: float = 120.0
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    max_outage: float = 300.0
    pool_size: int = 10
    max_body_mb: float = 10.0
    platform: str = DEFAULT_PLATFORM  # the dialect (syncer/platforms/)
