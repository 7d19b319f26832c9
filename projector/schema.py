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

``run_writers`` — one row per writing session of a run (first process, resume, rewind, shared-mode
writer): ``run_uid``, ``writer``, ``label``, ``"primary"`` BOOLEAN (its finish sets the run's
state), ``joined_at``, ``finished_at`` DOUBLE, ``state``, ``exit_code`` INTEGER.

``dead_letters`` — messages that could not be folded: ``stream_seq`` BIGINT, ``subject``
VARCHAR, ``reason`` VARCHAR, ``payload`` BLOB (the raw message), ``received_at`` TIMESTAMPTZ
(the time the stream stored it).

``alerts`` — one row per ``run.alert()``: ``run_uid``, ``alert_id`` VARCHAR (unique in the
run), ``title``, ``text``, ``level`` (INFO/WARN/ERROR) VARCHAR, ``timestamp`` DOUBLE (epoch s),
``wait_duration`` DOUBLE (s), ``throttled`` BOOLEAN (same title within ``wait_duration`` of the
last one sent: recorded, not delivered), ``writer`` VARCHAR (the writing process).

``alert_deliveries`` — one row per (alert, sink) the server tried: ``run_uid``, ``alert_id``,
``sink`` (webhook/email) VARCHAR, ``status`` VARCHAR (delivered | retrying | failed),
``attempts`` INTEGER, ``error`` VARCHAR (the last attempt's, NULL once delivered),
``attempted_at`` DOUBLE and ``delivered_at`` DOUBLE (epoch s).

``stop_requests`` — one row per acknowledged stop from outside: ``run_uid``, ``requested_at``
DOUBLE (epoch s), ``requested_by`` VARCHAR (who asked), ``writers`` VARCHAR[] (the run's writers
that answered), ``request_writer`` VARCHAR (the requester's writer id, ``api:<id>``).
``system_metrics`` — one row per (sample, key) of the SDK's system-metrics sampler:
``run_uid``, ``writer`` VARCHAR (the writing process), ``label`` VARCHAR (the writer's label in a
shared run, else NULL), ``timestamp`` DOUBLE epoch seconds, ``runtime`` DOUBLE (seconds since
the run's start), ``key`` VARCHAR (W&B's names: ``system.cpu``, ``system.gpu.0.gpu``...),
``value`` DOUBLE.

``console`` — one row per line the run's process wrote to stdout or stderr: ``run_uid``,
``writer``, ``label`` VARCHAR, ``stream`` VARCHAR (stdout/stderr), ``line`` BIGINT (numbered from 0
per writer across both streams), ``timestamp`` DOUBLE (when the line began), ``text`` VARCHAR
(the line without its newline; a line rewritten with ``\\r`` holds its final state; bytes that
are not UTF-8 appear as ``\\xNN``).

Views
-----

``history_wide`` — one row per (run_uid, step): ``run_uid``, ``_step`` BIGINT, ``_timestamp``
DOUBLE (latest row timestamp of the step), ``_runtime`` DOUBLE (``_timestamp`` − the run's
created_at, seconds), ``metrics`` MAP(VARCHAR, DOUBLE) of the step's numeric values.

``history_branches`` — ``history`` for every branch of every run: ``run_uid``, ``branch``
INTEGER, ``current`` BOOLEAN, then the ``history`` columns (a rewind's archived rows: ``NOT
current``). ``history_lines`` (internal): the segments with their integer line codes.

``group_history`` — per (``entity``, ``project``, ``"group"``, ``key``, ``step``): ``runs``,
``mean``, ``min``, ``max`` of the group's numeric values.

``runs_overview`` — ``runs`` plus ``summary`` and ``config`` as MAP(VARCHAR, DOUBLE)
(numeric values) and ``summary_json``/``config_json`` MAP(VARCHAR, VARCHAR) (the others).

``files`` — a run's Files list, one row per (run, name): ``run_uid``, ``name`` VARCHAR (a relative
path), ``size`` BIGINT bytes, ``sha256`` VARCHAR (the object holding the content), ``mtime``
DOUBLE (the file's modification time, epoch s), ``policy`` VARCHAR (live/end/now),
``updated_at`` DOUBLE (when this content was recorded). A file saved again replaces its row.

``artifacts`` — one row per artifact version: ``entity``, ``project``, ``name`` VARCHAR,
``version`` INTEGER (``v0``, ``v1``, …: a new one only when the content changes), ``type``,
``digest`` VARCHAR (sha256 of the manifest), ``description`` VARCHAR, ``metadata`` JSON,
``size`` BIGINT (bytes of the stored files), ``file_count`` INTEGER (entries, references
included), ``created_by`` VARCHAR (run_uid that made the version), ``created_at`` DOUBLE.

``artifact_files`` — the manifest of each version: ``entity``, ``project``, ``name``,
``version``, ``path`` VARCHAR, ``sha256`` VARCHAR (NULL for a reference), ``size`` BIGINT,
``ref`` VARCHAR (the URI of a reference, else NULL).

``media`` (a view over ``history``) — one row per media value in the visible history (images,
tables, histograms, audio, video, HTML, plotly figures: the history value is a reference with
W&B's ``_type``): ``run_uid``, ``step``, ``key``, ``type`` (``image-file``, ``table-file``,
``histogram``, ``images`` for a list, ...), ``path`` (the run file holding it), ``sha256`` (its
object), ``size``, ``format``, ``caption``, ``width``, ``height``, ``"rows"``, ``"columns"``,
``bins``, ``count`` (items of a list), ``reference`` (the whole reference as JSON), ``timestamp``.
A view, so forks, rewinds and deletes show exactly as in ``history``.

``artifact_aliases`` (a view) — where each alias points now: ``entity``, ``project``, ``name``,
``alias``, ``version``. ``latest`` is always the newest version. Built from
``artifact_alias_moves`` (``entity``, ``project``, ``name``, ``alias``, ``version``,
``revision`` BIGINT, ``run_uid``): every move, the highest registry revision wins.

``artifact_usage`` — lineage, one row per (run, version, role): ``run_uid``, ``entity``,
``project``, ``name``, ``version``, ``role`` VARCHAR (``output``: the run logged it, ``input``:
the run used it), ``digest`` VARCHAR, ``used_at`` DOUBLE (the latest such event).
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

PUBLIC_TABLES = ("runs", "history", "summary", "config", "metrics", "dead_letters", "run_writers", "alerts",
                 "alert_deliveries", "stop_requests", "files", "artifacts", "artifact_files", "artifact_aliases",
                 "artifact_alias_moves", "artifact_usage", "system_metrics", "console", "media")
"""What users query as tables (``history`` is a view over the internal point tables)."""
INTERNAL_TABLES = ("projector_checkpoint", "applied", "projector_state", "history_numeric", "history_other",
                   "history_steps", "history_run_ids", "history_key_ids", "history_segments", "history_clock")
VIEWS = ("history_lines", "history", "history_branches", "history_wide", "runs_overview", "group_history",
         "artifact_aliases", "media")
"""Created by :data:`VIEWS_DDL`, in this order."""
STORED_TABLES = tuple(t for t in (*PUBLIC_TABLES, *INTERNAL_TABLES) if t not in VIEWS)
"""Every real table, created by :data:`TABLES_DDL`."""

TABLES_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    run_uid VARCHAR PRIMARY KEY, entity VARCHAR, project VARCHAR, run_id VARCHAR, path VARCHAR,
    name VARCHAR, state VARCHAR, notes VARCHAR, tags VARCHAR[], "group" VARCHAR, job_type VARCHAR,
    mode VARCHAR, created_at TIMESTAMPTZ, heartbeat_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
    runtime DOUBLE, exit_code INTEGER, last_step BIGINT, metadata JSON, origin_kind VARCHAR,
    origin_run_uid VARCHAR, origin_step DOUBLE, origin_depth INTEGER
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
CREATE TABLE IF NOT EXISTS alerts (
    run_uid VARCHAR, alert_id VARCHAR, title VARCHAR, text VARCHAR, level VARCHAR, timestamp DOUBLE,
    wait_duration DOUBLE, throttled BOOLEAN, writer VARCHAR
);
CREATE TABLE IF NOT EXISTS alert_deliveries (
    run_uid VARCHAR, alert_id VARCHAR, sink VARCHAR, status VARCHAR, attempts INTEGER, error VARCHAR,
    attempted_at DOUBLE, delivered_at DOUBLE
);
CREATE TABLE IF NOT EXISTS stop_requests (
    run_uid VARCHAR, requested_at DOUBLE, requested_by VARCHAR, writers VARCHAR[], request_writer VARCHAR
);
CREATE TABLE IF NOT EXISTS system_metrics (
    run_uid VARCHAR, writer VARCHAR, label VARCHAR, timestamp DOUBLE, runtime DOUBLE, key VARCHAR, value DOUBLE
);
CREATE TABLE IF NOT EXISTS console (
    run_uid VARCHAR, writer VARCHAR, label VARCHAR, stream VARCHAR, line BIGINT, timestamp DOUBLE, text VARCHAR
);
CREATE TABLE IF NOT EXISTS projector_checkpoint (
    name VARCHAR PRIMARY KEY, stream_seq BIGINT NOT NULL, updated_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS applied (run_uid VARCHAR, writer VARCHAR, seq BIGINT, stream_seq BIGINT);
CREATE TABLE IF NOT EXISTS projector_state (run_uid VARCHAR PRIMARY KEY, state BLOB);
CREATE TABLE IF NOT EXISTS history_segments (
    run_uid VARCHAR, branch INTEGER, line VARCHAR, min_step BIGINT, max_step BIGINT, "current" BOOLEAN
);
CREATE TABLE IF NOT EXISTS history_clock (run_uid VARCHAR, since DOUBLE, runtime_offset DOUBLE);
CREATE TABLE IF NOT EXISTS run_writers (
    run_uid VARCHAR, writer VARCHAR, label VARCHAR, "primary" BOOLEAN, joined_at DOUBLE, finished_at DOUBLE,
    state VARCHAR, exit_code INTEGER
);
CREATE TABLE IF NOT EXISTS files (
    run_uid VARCHAR, name VARCHAR, size BIGINT, sha256 VARCHAR, mtime DOUBLE, policy VARCHAR, updated_at DOUBLE
);
CREATE TABLE IF NOT EXISTS artifacts (
    entity VARCHAR, project VARCHAR, name VARCHAR, version INTEGER, type VARCHAR, digest VARCHAR,
    description VARCHAR, metadata JSON, size BIGINT, file_count INTEGER, created_by VARCHAR, created_at DOUBLE
);
CREATE TABLE IF NOT EXISTS artifact_files (
    entity VARCHAR, project VARCHAR, name VARCHAR, version INTEGER, path VARCHAR, sha256 VARCHAR,
    size BIGINT, ref VARCHAR
);
CREATE TABLE IF NOT EXISTS artifact_alias_moves (
    entity VARCHAR, project VARCHAR, name VARCHAR, alias VARCHAR, version INTEGER, revision BIGINT,
    run_uid VARCHAR
);
CREATE TABLE IF NOT EXISTS artifact_usage (
    run_uid VARCHAR, entity VARCHAR, project VARCHAR, name VARCHAR, version INTEGER, role VARCHAR,
    digest VARCHAR, used_at DOUBLE
);
"""

VIEWS_DDL = """
CREATE OR REPLACE VIEW history_lines AS
SELECT g.run_uid, g.branch, g."current", l.id AS line, g.min_step, g.max_step
FROM history_segments g JOIN history_run_ids l ON l.run_uid = g.line;

CREATE OR REPLACE VIEW history AS
SELECT g.run_uid, h.step, k.key, h.value, h.value_json, s.timestamp
FROM (SELECT run, step, key, value, NULL::VARCHAR AS value_json FROM history_numeric
      UNION ALL
      SELECT run, step, key, value, value_json FROM history_other) h
JOIN (SELECT * FROM history_lines WHERE "current") g
  ON g.line = h.run AND h.step >= g.min_step AND h.step <= g.max_step
JOIN history_key_ids k ON k.id = h.key
LEFT JOIN history_steps s ON s.run = h.run AND s.step = h.step;

CREATE OR REPLACE VIEW history_branches AS
SELECT g.run_uid, g.branch, g."current", h.step, k.key, h.value, h.value_json, s.timestamp
FROM (SELECT run, step, key, value, NULL::VARCHAR AS value_json FROM history_numeric
      UNION ALL
      SELECT run, step, key, value, value_json FROM history_other) h
JOIN history_lines g ON g.line = h.run AND h.step >= g.min_step AND h.step <= g.max_step
JOIN history_key_ids k ON k.id = h.key
LEFT JOIN history_steps s ON s.run = h.run AND s.step = h.step;

CREATE OR REPLACE VIEW history_wide AS
WITH w AS (
    SELECT h.run_uid, h.step AS _step, max(h.timestamp) AS _timestamp,
           map_from_entries(coalesce(
               list(struct_pack(k := h.key, v := h.value)) FILTER (WHERE h.value IS NOT NULL),
               [])) AS metrics
    FROM history h
    GROUP BY h.run_uid, h.step
)
SELECT w.run_uid, w._step, w._timestamp, w._timestamp - c.since + c.runtime_offset AS _runtime, w.metrics
FROM w ASOF LEFT JOIN history_clock c ON c.run_uid = w.run_uid AND w._timestamp >= c.since;

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

CREATE OR REPLACE VIEW group_history AS
SELECT r.entity, r.project, r."group", h.key, h.step, count(*) AS runs,
       avg(h.value) AS mean, min(h.value) AS min, max(h.value) AS max
FROM history h JOIN runs r USING (run_uid)
WHERE r."group" IS NOT NULL AND h.value IS NOT NULL
GROUP BY ALL;

CREATE OR REPLACE VIEW artifact_aliases AS
SELECT entity, project, name, alias, arg_max(version, revision) AS version
FROM artifact_alias_moves GROUP BY entity, project, name, alias;

CREATE OR REPLACE VIEW media AS
WITH m AS (
    SELECT g.run_uid, h.step, k.key, h.value_json, s.timestamp,
           json_extract_string(h.value_json, '$._type') AS type
    FROM history_other h
    JOIN (SELECT * FROM history_lines WHERE "current") g
      ON g.line = h.run AND h.step >= g.min_step AND h.step <= g.max_step
    JOIN history_key_ids k ON k.id = h.key
    LEFT JOIN history_steps s ON s.run = h.run AND s.step = h.step
    WHERE h.value_json LIKE '{%"_type"%'
)
SELECT run_uid, step, key, type,
       json_extract_string(value_json, '$.path') AS path,
       json_extract_string(value_json, '$.sha256') AS sha256,
       TRY_CAST(json_extract_string(value_json, '$.size') AS BIGINT) AS size,
       json_extract_string(value_json, '$.format') AS format,
       json_extract_string(value_json, '$.caption') AS caption,
       TRY_CAST(json_extract_string(value_json, '$.width') AS INTEGER) AS width,
       TRY_CAST(json_extract_string(value_json, '$.height') AS INTEGER) AS height,
       TRY_CAST(json_extract_string(value_json, '$.nrows') AS BIGINT) AS "rows",
       TRY_CAST(json_extract_string(value_json, '$.ncols') AS INTEGER) AS "columns",
       TRY_CAST(json_extract_string(value_json, '$.nbins') AS INTEGER) AS bins,
       TRY_CAST(json_extract_string(value_json, '$.count') AS INTEGER) AS count,
       value_json AS reference, timestamp
FROM m
WHERE type IN ('image-file', 'table-file', 'audio-file', 'video-file', 'html-file', 'plotly-file', 'histogram',
               'images', 'media-list');
"""
