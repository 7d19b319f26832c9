"""The projection's DuckDB schema: the public SQL surface and the projector's own bookkeeping.

Public tables
-------------

``runs`` — one row per run.
    ``run_uid`` VARCHAR primary key: the immutable internal run key (also in every subject);
    ``entity``, ``project``, ``run_id`` VARCHAR and ``path`` = ``entity/project/run_id`` (NULL
    until the run's ``init`` event has been projected); ``name``, ``notes`` VARCHAR;
    ``state`` VARCHAR: running | finished | failed | killed | crashed;
    ``tags`` VARCHAR[]; ``"group"``, ``job_type``, ``mode`` (online/offline) VARCHAR;
    ``created_at`` TIMESTAMPTZ (the run's start time); ``heartbeat_at`` TIMESTAMPTZ (the latest
    timestamp of any event the run's own writers sent); ``finished_at`` TIMESTAMPTZ (timestamp of
    ``finish``); ``runtime`` DOUBLE seconds (from ``finish`` once finished, else heartbeat_at −
    created_at); ``exit_code`` INTEGER; ``last_step`` BIGINT (highest step logged);
    ``metadata`` JSON (host, OS, git, ...); ``origin_kind`` VARCHAR (resume/fork/rewind),
    ``origin_run_uid`` VARCHAR, ``origin_step`` DOUBLE: where the run came from.

``history`` (a view) — long form, one row per (run, step, key); a later write to the same step
and key replaces the earlier one.
    ``run_uid`` VARCHAR; ``step`` BIGINT; ``key`` VARCHAR (nested keys dotted: ``a.b``);
    ``value`` DOUBLE (numbers and booleans, NaN/±inf/-0.0 kept as logged, else NULL);
    ``value_json`` VARCHAR (JSON text of a non-numeric value: strings, lists, null; else NULL);
    ``timestamp`` DOUBLE (epoch seconds when the row was logged; a step logged again takes the
    later row's timestamp for all its keys).

``summary`` — one row per (run, key): ``run_uid``, ``key`` VARCHAR, ``value`` DOUBLE,
``value_json`` VARCHAR (same split as history). The last logged value of each key by default;
``define_metric`` aggregates appear as ``key.min``, ``key.max``, ``key.mean``, ``key.first``.

``config`` — one row per (run, key): ``run_uid``, ``key`` VARCHAR (nested keys dotted),
``value`` DOUBLE, ``value_json`` VARCHAR.

``metrics`` — one row per ``define_metric``: ``run_uid``, ``name`` VARCHAR (may end with ``*``),
``step_metric`` VARCHAR, ``summary`` VARCHAR[] (min/max/mean/last/first/none), ``goal``
VARCHAR (minimize/maximize), ``hidden`` BOOLEAN.

``dead_letters`` — messages that could not be folded: ``stream_seq`` BIGINT, ``subject``
VARCHAR, ``reason`` VARCHAR, ``payload`` BLOB (the raw message), ``received_at`` TIMESTAMPTZ
(the time the stream stored it).

Views
-----

``history_wide`` — one row per (run_uid, step): ``run_uid``, ``_step`` BIGINT, ``_timestamp``
DOUBLE (latest row timestamp of the step), ``_runtime`` DOUBLE (``_timestamp`` − the run's
created_at, seconds), ``metrics`` MAP(VARCHAR, DOUBLE) of the step's numeric values.

``runs_overview`` — ``runs`` plus ``summary`` and ``config`` as MAP(VARCHAR, DOUBLE)
(numeric values) and ``summary_json``/``config_json`` MAP(VARCHAR, VARCHAR) (the others).

A deleted run (``delete`` tombstone) leaves no row in any public table; see
:meth:`~.store.Store.purge_run` for what stays internally.

Internal tables
---------------

``projector_checkpoint`` (name, stream_seq, updated_at): the last stream seq folded, written in
the same transaction as its rows; ``applied`` (run_uid, writer, seq, stream_seq): every event
applied; ``projector_state`` (run_uid, state BLOB): each run's msgpack fold state.

What ``history`` reads (see :mod:`.points` for why): ``history_numeric`` (run INTEGER, step
BIGINT, key INTEGER, value DOUBLE): the points with a numeric value; ``history_other`` (the same
plus ``value_json``): the others; ``history_steps`` (run, step, timestamp DOUBLE): one row per
logged step; ``history_run_ids`` (id, run_uid) and ``history_key_ids`` (id, key): the integer
codes. A file written with ``history`` as a plain table (before these) is rebuilt from the log
when opened.
"""

from __future__ import annotations

PUBLIC_TABLES = ("runs", "history", "summary", "config", "metrics", "dead_letters")
"""What users query as tables (``history`` is a view over the internal point tables)."""
INTERNAL_TABLES = ("projector_checkpoint", "applied", "projector_state", "history_numeric", "history_other",
                   "history_steps", "history_run_ids", "history_key_ids")
VIEWS = ("history", "history_wide", "runs_overview")
"""Created by :data:`VIEWS_DDL`, in this order."""
STORED_TABLES = tuple(t for t in (*PUBLIC_TABLES, *INTERNAL_TABLES) if t not in VIEWS)
"""Every real table, created by :data:`TABLES_DDL`."""

TABLES_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    run_uid VARCHAR PRIMARY KEY, entity VARCHAR, project VARCHAR, run_id VARCHAR, path VARCHAR,
    name VARCHAR, state VARCHAR, notes VARCHAR, tags VARCHAR[], "group" VARCHAR, job_type VARCHAR,
    mode VARCHAR, created_at TIMESTAMPTZ, heartbeat_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
    runtime DOUBLE, exit_code INTEGER, last_step BIGINT, metadata JSON, origin_kind VARCHAR,
    origin_run_uid VARCHAR, origin_step DOUBLE
);
CREATE TABLE IF NOT EXISTS history_numeric (run INTEGER, step BIGINT, key INTEGER, value DOUBLE);
CREATE TABLE IF NOT EXISTS history_other (run INTEGER, step BIGINT, key INTEGER, value DOUBLE, value_json VARCHAR);
CREATE TABLE IF NOT EXISTS history_steps (run INTEGER, step BIGINT, timestamp DOUBLE);
CREATE TABLE IF NOT EXISTS history_run_ids (id INTEGER, run_uid VARCHAR);
CREATE TABLE IF NOT EXISTS history_key_ids (id INTEGER, key VARCHAR);
CREATE TABLE IF NOT EXISTS summary (run_uid VARCHAR, key VARCHAR, value DOUBLE, value_json VARCHAR);
CREATE TABLE IF NOT EXISTS config (run_uid VARCHAR, key VARCHAR, value DOUBLE, value_json VARCHAR);
CREATE TABLE IF NOT EXISTS metrics (
    run_uid VARCHAR, name VARCHAR, step_metric VARCHAR, summary VARCHAR[], goal VARCHAR, hidden BOOLEAN
);
CREATE TABLE IF NOT EXISTS dead_letters (
    stream_seq BIGINT, subject VARCHAR, reason VARCHAR, payload BLOB, received_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS projector_checkpoint (
    name VARCHAR PRIMARY KEY, stream_seq BIGINT NOT NULL, updated_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS applied (run_uid VARCHAR, writer VARCHAR, seq BIGINT, stream_seq BIGINT);
CREATE TABLE IF NOT EXISTS projector_state (run_uid VARCHAR PRIMARY KEY, state BLOB);
"""

VIEWS_DDL = """
CREATE OR REPLACE VIEW history AS
SELECT r.run_uid, h.step, k.key, h.value, h.value_json, s.timestamp
FROM (SELECT run, step, key, value, NULL::VARCHAR AS value_json FROM history_numeric
      UNION ALL
      SELECT run, step, key, value, value_json FROM history_other) h
JOIN history_run_ids r ON r.id = h.run
JOIN history_key_ids k ON k.id = h.key
LEFT JOIN history_steps s ON s.run = h.run AND s.step = h.step;

CREATE OR REPLACE VIEW history_wide AS
SELECT h.run_uid, h.step AS _step, max(h.timestamp) AS _timestamp,
       max(h.timestamp) - epoch(any_value(r.created_at)) AS _runtime,
       map_from_entries(coalesce(
           list(struct_pack(k := h.key, v := h.value)) FILTER (WHERE h.value IS NOT NULL),
           [])) AS metrics
FROM history h LEFT JOIN runs r USING (run_uid)
GROUP BY h.run_uid, h.step;

CREATE OR REPLACE VIEW runs_overview AS
WITH s AS (
    SELECT run_uid,
           map_from_entries(list(struct_pack(k := key, v := value)) FILTER (WHERE value IS NOT NULL))
               AS summary,
           map_from_entries(list(struct_pack(k := key, v := value_json)) FILTER (WHERE value IS NULL))
               AS summary_json
    FROM summary GROUP BY run_uid
), c AS (
    SELECT run_uid,
           map_from_entries(list(struct_pack(k := key, v := value)) FILTER (WHERE value IS NOT NULL))
               AS config,
           map_from_entries(list(struct_pack(k := key, v := value_json)) FILTER (WHERE value IS NULL))
               AS config_json
    FROM config GROUP BY run_uid
)
SELECT r.*, s.summary, s.summary_json, c.config, c.config_json
FROM runs r LEFT JOIN s USING (run_uid) LEFT JOIN c USING (run_uid);
"""
