"""Settings: arguments, then ``RUNSTREAM_*`` environment variables, then ``<dir>/config.toml``.

A NamedTuple rather than a pydantic model (or a dataclass) on purpose: ``init()`` has a 20 ms budget
and importing pydantic alone costs ~60 ms, dataclasses ~7 ms. Values are checked here, once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

MODES = ("online", "offline", "disabled", "shared")
CONSOLE_MODES = ("auto", "wrap", "off")
MIN_STATS_INTERVAL = 0.1
RUNS_FOLDER = "runstream-runs"
"""Folder of local run files (spools) under ``run_dir``; not a valid module name, so it can never
shadow the ``runstream`` package when a script runs from that directory."""


class Settings(NamedTuple):
    dir: Path = Path("~/.runstream")
    """Data directory of the local stack (nats store, DuckDB file, pids). ``RUNSTREAM_DIR``."""
    nats_url: str | None = None
    """An existing NATS server, or several servers of one cluster comma-separated (clients also
    learn the cluster's other nodes from the server); unset → the embedded local stack.
    ``RUNSTREAM_NATS_URL``."""
    stream_replicas: int = 1
    """Replicas of the event stream and of every KV and object bucket (1 for the embedded stack,
    3 on a cluster). Streams are created with it; ``runstream server`` raises an existing stream
    with fewer replicas in place at start. ``RUNSTREAM_STREAM_REPLICAS``."""
    nats_creds: str | None = None
    nats_token: str | None = None
    nats_user: str | None = None
    nats_password: str | None = None
    mode: str = "online"
    run_dir: Path | None = None
    """Parent of the ``runstream-runs/`` folder of local run files (default: the working directory)."""
    heartbeat_interval: float = 30.0
    crash_timeout: float = 300.0
    flush_interval: float = 0.25
    finish_timeout: float = 60.0
    stop_grace: float = 30.0
    """After a stop from outside interrupts the run's main thread, how long the process has to end
    before the SDK escalates: it records the ``killed`` state, sends what is spooled, then SIGTERM
    to itself, and a hard exit (255) after as long again. ``RUNSTREAM_STOP_GRACE``."""
    init_timeout: float = 30.0
    """How long ``init(id=...)`` waits for the broker to confirm the id is free before going on
    with the run spooled locally (the claim keeps being retried in the background)."""
    quiet: bool = False
    port: int = 14222
    """Preferred client port of the embedded nats-server (a free one is used if taken)."""
    server_name: str = "main"
    """Name of the runstream server to query: RPC subjects are ``rsctl.q.<server_name>.*``."""
    entity: str | None = None
    """Default entity (W&B: your user name). ``RUNSTREAM_ENTITY``; falls back to the login name."""
    http_port: int = 14280
    """Preferred HTTP port of ``runstream server`` on 127.0.0.1 (a free one if taken; 0: any free
    one; -1: no HTTP API). ``RUNSTREAM_HTTP_PORT``."""
    http_host: str = "127.0.0.1"
    """Address the server's HTTP API listens on: loopback by default; ``0.0.0.0`` (all interfaces)
    behind a load balancer or in a container, with ``api_key`` set. ``RUNSTREAM_HTTP_HOST``."""
    api_key: str | None = None
    """When set, the server's HTTP API requires ``Authorization: Bearer <key>`` and ``Api()``
    sends it. ``RUNSTREAM_API_KEY``."""
    api_url: str | None = None
    """A remote runstream server's HTTP URL for ``Api()`` (unset: the local stack's).
    ``RUNSTREAM_API_URL``."""
    sql_memory_limit: str = "2GB"
    """Bound on each ad-hoc SQL query's intermediates (DuckDB ``operator_memory_limit``; empty:
    none). ``RUNSTREAM_SQL_MEMORY_LIMIT``."""
    alert_webhook_url: str | None = None
    """The server POSTs each alert here as JSON (Slack-compatible: ``text`` plus ``blocks`` and
    ``attachments``). ``RUNSTREAM_ALERT_WEBHOOK_URL``."""
    smtp_host: str | None = None
    """SMTP server for alert emails (with ``smtp_to``). ``RUNSTREAM_SMTP_HOST``."""
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str | None = None
    """Sender address of alert emails (default ``runstream@<host name>``)."""
    smtp_to: str | None = None
    """Recipients of alert emails, comma-separated."""
    smtp_tls: str = "auto"
    """``auto`` (STARTTLS when the server offers it), ``starttls`` (required), ``ssl`` (SMTPS) or
    ``none``."""
    alert_attempts: int = 5
    """Delivery attempts per alert and sink before it is recorded ``failed``."""
    alert_backoff: float = 2.0
    """Seconds before the second attempt; doubled for each further one."""
    alert_timeout: float = 10.0
    """Seconds one delivery attempt may take."""
    alert_max_age: float = 86400.0
    """Alerts older than this (seconds) and never tried are not delivered (e.g. after a sink is
    configured for the first time, or an offline run is synced days later)."""

    code_snapshot: bool = True
    """Save ``requirements.txt`` and (in a dirty git work tree) ``diff.patch`` as run files.
    ``RUNSTREAM_CODE_SNAPSHOT=0`` turns it off."""
    stats_interval: float = 15.0
    """Seconds between system-metrics samples (CPU, memory, disk, network, GPUs), at least 0.1;
    0 turns the sampler off. ``RUNSTREAM_STATS_INTERVAL``."""
    disable_stats: bool = False
    """Record no system metrics (W&B's ``x_disable_stats``). ``RUNSTREAM_DISABLE_STATS``."""
    console: str = "auto"
    """Record the process's stdout and stderr: ``auto`` (or ``wrap``) tees them into the run's
    ``console`` table; ``off`` records nothing. ``RUNSTREAM_CONSOLE``."""

    def replace(self, **changes: Any) -> Settings:
        return self._replace(**changes)

    @property
    def embedded(self) -> bool:
        return not self.nats_url


_FIELDS = Settings.__annotations__


def _coerce(name: str, value: Any) -> Any:
    t = _FIELDS[name]
    kind = str(getattr(t, "__forward_arg__", t))  # NamedTuple wraps string annotations in ForwardRef
    if value is None:
        return None
    if "Path" in kind:
        return Path(value).expanduser()
    if kind.startswith("float"):
        return float(value)
    if kind.startswith("int"):
        return int(value)
    if kind.startswith("bool"):
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    return str(value)


def load_settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``overrides`` (arguments), the environment and the config file."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    data_dir = overrides.get("dir") or env.get("RUNSTREAM_DIR")
    base = Path(data_dir or Settings().dir).expanduser()
    values["dir"] = base
    cfg_file = Path(env.get("RUNSTREAM_CONFIG") or base / "config.toml")
    if cfg_file.is_file():
        import tomllib

        with cfg_file.open("rb") as fh:
            for k, v in tomllib.load(fh).items():
                if k in _FIELDS:
                    values[k] = _coerce(k, v)
    for name in _FIELDS:
        raw = env.get(f"RUNSTREAM_{name.upper()}")
        if raw not in (None, ""):
            values[name] = _coerce(name, raw)
    for k, v in overrides.items():
        if k not in _FIELDS:
            raise TypeError(f"unknown setting {k!r}; known: {', '.join(sorted(_FIELDS))}")
        if v is not None:
            values[k] = _coerce(k, v)
    if not any(values.get(k) for k in ("nats_user", "nats_token", "nats_creds")):
        login = base / "login"  # `runstream login`: a key the broker knows as user rsk_<id>
        if login.is_file():
            key = login.read_text().strip()
            if key.startswith("rsk_") and key.count("_") >= 2:
                values["nats_user"] = "_".join(key.split("_")[:2])
                values["nats_password"] = key
    s = Settings(**values)
    if s.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {s.mode!r}")
    if s.heartbeat_interval <= 0 or s.crash_timeout <= 0:
        raise ValueError("heartbeat_interval and crash_timeout must be positive seconds")
    if s.stats_interval != 0 and not s.stats_interval >= MIN_STATS_INTERVAL:
        raise ValueError(f"stats_interval must be at least {MIN_STATS_INTERVAL} seconds, or 0 to turn "
                         f"system metrics off, not {s.stats_interval!r}")
    if not 1 <= s.stream_replicas <= 5:
        raise ValueError(f"stream_replicas must be 1 to 5 (JetStream's range), not {s.stream_replicas!r}")
    if s.nats_url:
        from .broker.urls import split_urls

        split_urls(s.nats_url)  # a malformed list fails here, naming the item
    if s.console not in CONSOLE_MODES:
        raise ValueError(f"console must be one of {', '.join(CONSOLE_MODES)}, not {s.console!r}")
    return s
