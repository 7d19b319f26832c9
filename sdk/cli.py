"""The ``runstream`` command line: the local stack, runs, SQL, replay, sync and the demo.

Every command returns an exit code: 0 on success, 1 on a runstream error (the message on stderr),
2 on bad usage, 130 when interrupted. Rendering lives in :mod:`runstream.query.render` (pure).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .settings import RUNS_FOLDER, Settings, load_settings

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CliError(Exception):
    """A failure the CLI reports as one line on stderr (exit code 1)."""


def _out() -> TextIO:
    return sys.stdout


def _err() -> TextIO:
    return sys.stderr


def sql_literal(text: str) -> str:
    """A SQL string literal (the RPC takes no parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _client(settings: Settings, *, start_stack: bool = True) -> Any:
    from .query.client import QueryClient

    return QueryClient(settings, start_stack=start_stack)


def _fresh_sql(client: Any, query: str, **kwargs: Any) -> Any:
    """Read-your-writes: wait until the projection has what the stream holds now."""
    return client.sql(query, wait_seq=client.stream_last_seq(), **kwargs)


# -- the stack ------------------------------------------------------------------------------------


def status_lines(st: Any, health: dict[str, Any] | None, health_error: str | None) -> list[str]:
    """The ``runstream status`` text for a stack status and the server's health (pure)."""
    lines = [
        f"stack     {'running' if st.running else 'not running'}",
        f"data dir  {st.dir}",
        f"nats      {st.nats_url or '-'}  (pid {st.nats_pid or '-'}, "
        f"{'alive' if st.nats_alive else 'stopped'})",
        f"server    pid {st.server_pid or '-'}, {'alive' if st.server_alive else 'stopped'}",
        f"http      {getattr(st, 'http_url', None) or '-'}",
        f"database  {st.db_path}",
    ]
    lines += health_lines(health, health_error)
    return lines


def health_lines(health: dict[str, Any] | None, health_error: str | None) -> list[str]:
    from .query.render import format_duration

    if health is not None:
        last, lag = health.get("stream_last_seq"), health.get("lag")
        lines = [f"projector at stream seq {health['projected_seq']} of {'?' if last is None else last} "
                 f"(lag {'?' if lag is None else lag}), up {format_duration(health.get('uptime_s'))}"]
        broker = health.get("broker")
        if broker:
            lines.append(broker_line(broker))
        stalled = health.get("stalled")
        if stalled:
            lines.append(f"projector PAUSED: {stalled.get('message')}")
        replay = health.get("replay") or {}
        if replay.get("running"):
            lines.append(f"replay    running: {replay.get('done', 0)}/{replay.get('total', 0)}")
        elif replay.get("error"):
            lines.append(f"replay    failed: {replay['error']}")
        return lines
    if health_error:
        return [f"projector unknown: {health_error}"]
    return []


def broker_line(broker: dict[str, Any]) -> str:
    """The server's view of the log (health's ``broker``): connected where, or down since when."""
    import time as _time

    since = broker.get("since")
    when = _time.strftime("%H:%M:%S", _time.localtime(since)) if since else "?"
    if broker.get("connected"):
        line = f"broker    connected to {broker.get('url') or '?'} since {when}"
    else:
        line = f"broker    unreachable since {when}: reads answer from the database, the lag is as last known"
        if broker.get("last_error"):
            line += f" (last error: {broker['last_error']})"
    failing = broker.get("failing")
    if failing:
        line += f"; retrying: {', '.join(sorted(failing))}"
    return line


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from . import stack

    was = stack.status(settings)
    st = stack.up(settings)
    # another process may start it concurrently (the stack's lock makes that safe): do not claim it
    verb = "already running" if was.running else "up"
    print(f"runstream stack {verb}: {st.nats_url} (nats pid {st.nats_pid}, server pid {st.server_pid})",
          file=_out())
    print(f"data dir {st.dir}; stop it with `runstream down`", file=_out())
    return EXIT_OK


def cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from . import stack

    was = stack.status(settings)
    stack.down(settings)
    if was.nats_alive or was.server_alive:
        print(f"runstream stack stopped (data kept in {settings.dir})", file=_out())
    else:
        print("runstream stack was not running", file=_out())
    return EXIT_OK


def _health(settings: Settings, start_stack: bool = False) -> tuple[dict[str, Any] | None, str | None]:
    from .errors import RunstreamError

    try:
        return _client(settings, start_stack=start_stack).health(), None
    except RunstreamError as e:
        return None, str(e)


def log_lines(url: str, settings: Settings) -> list[str]:
    """The log's part of ``runstream status``: the node answering, the cluster's nodes, and each
    stream's replicas, leader and lagging peers."""
    from .broker.errors import BrokerError
    from .broker.miniclient import MiniNats
    from .broker.streams import report_lines, stream_report

    client = MiniNats.for_settings(url, settings, name="runstream-status")
    try:
        client.connect()
        info = client.server_info
        nodes = client.configured + client.discovered
        where = f"cluster {info['cluster']!r}, " if info.get("cluster") else ""
        lines = [f"log       {where}connected to {info.get('server_name') or '?'} at {client.url}",
                 f"nodes     {', '.join(nodes)}"]
        return lines + ["streams"] + report_lines(stream_report(client))
    except BrokerError as e:
        return [f"log       unreachable: {e}"]
    finally:
        client.close()


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from . import stack

    if settings.nats_url:
        print(f"nats      {settings.nats_url} (external; RUNSTREAM_NATS_URL)", file=_out())
        health, error = _health(settings)
        if health:
            print(f"server    {settings.server_name!r} pid {health['pid']}, database {health['db_path']}",
                  file=_out())
        for line in health_lines(health, error) + log_lines(settings.nats_url, settings):
            print(line, file=_out())
        return EXIT_OK if health else EXIT_ERROR
    st = stack.status(settings)
    health, error = _health(settings) if st.running else (None, None)
    lines = status_lines(st, health, error)
    if st.nats_alive and st.nats_url:
        lines += log_lines(st.nats_url, settings)
    for line in lines:
        print(line, file=_out())
    return EXIT_OK


def cmd_server(args: argparse.Namespace, settings: Settings) -> int:
    from .query.server import config_from_args, run_forever

    return run_forever(config_from_args(args, settings))


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    """Print the web app's URL (RUNSTREAM_API_URL, else the local stack's, started if needed) and open it."""
    from . import stack

    url = settings.api_url or stack.http_url(settings)
    print(f"runstream web app: {url.rstrip('/')}/", file=_out())
    if not args.no_browser:
        import webbrowser

        if not webbrowser.open(f"{url.rstrip('/')}/"):
            print("runstream: no browser found here: open the URL above yourself", file=_out())
    return EXIT_OK


# -- reading --------------------------------------------------------------------------------------


def _default_entity(settings: Settings) -> str:
    return settings.entity or getpass.getuser()


def runs_query(entity: str | None, project: str | None, limit: int) -> str:
    """The SQL behind ``runstream runs`` (pure)."""
    where = ["r.path IS NOT NULL"]
    if entity is not None:
        where.append(f"r.entity = {sql_literal(entity)}")
    if project is not None:
        where.append(f"r.project = {sql_literal(project)}")
    return (
        "SELECT r.path, r.name, r.state, r.created_at AS created, r.runtime, "
        "(SELECT list(struct_pack(k := s.key, v := coalesce(CAST(s.value AS VARCHAR), s.value_json)) "
        "ORDER BY s.key) FROM summary s WHERE s.run_uid = r.run_uid) AS summary "
        f"FROM runs r WHERE {' AND '.join(where)} ORDER BY r.created_at DESC, r.path LIMIT {int(limit)}"
    )


def runs_table(columns: list[str], rows: list[tuple[Any, ...]], tz: Any = None) -> str:
    """Render the rows of :func:`runs_query` (pure)."""
    from .query.render import format_duration, format_summary, format_time, render_table

    out = []
    for path, name, state, created, runtime, summary in rows:
        pairs = [(d["k"], _number(d["v"])) for d in (summary or [])]
        out.append((path, name or "", state or "", format_time(created, tz), format_duration(runtime),
                    format_summary(pairs)))
    return render_table(["path", "name", "state", "created", "runtime", "summary"], out, max_col_width=60)


def _number(text: Any) -> Any:
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def _split_path(text: str, parts: int, what: str) -> list[str]:
    pieces = text.split("/")
    if len(pieces) != parts or not all(pieces):
        raise CliError(f"expected {what}, not {text!r}")
    return pieces


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    entity = project = None
    if args.path:
        if "/" in args.path:
            entity, project = _split_path(args.path, 2, "ENTITY/PROJECT")
        else:
            entity, project = _default_entity(settings), args.path
    result = _fresh_sql(_client(settings), runs_query(entity, project, args.limit + 1), entity=entity)
    from .query.render import table_rows

    columns, rows = table_rows(result.table)
    if not rows:
        where = f" in {entity}/{project}" if project else ""
        print(f"no runs{where}", file=_out())
        return EXIT_OK
    print(runs_table(columns, rows[: args.limit]), end="", file=_out())
    if len(rows) > args.limit:
        print(f"(first {args.limit} runs; --limit N shows more)", file=_out())
    return EXIT_OK


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from .query.render import render_run

    entity, project, run_id = _split_path(args.path, 3, "ENTITY/PROJECT/ID")
    client = _client(settings)
    runs = _fresh_sql(client, f"SELECT * FROM runs WHERE entity = {sql_literal(entity)} AND "
                      f"project = {sql_literal(project)} AND run_id = {sql_literal(run_id)}",
                      entity=entity).to_pylist()
    if not runs:
        raise CliError(f"no run {args.path}; list the project's runs with "
                       f"`runstream runs {entity}/{project}`")
    run = runs[0]
    uid = sql_literal(run["run_uid"])
    if run.get("origin_run_uid"):  # name the origin by its path, as the user knows it
        origin = client.sql(f"SELECT path FROM runs WHERE run_uid = {sql_literal(run['origin_run_uid'])}",
                            entity=entity)
        paths = [r["path"] for r in origin.to_pylist() if r["path"]]
        if paths:
            run["origin_path"] = paths[0]

    def pairs(table: str) -> list[tuple[str, Any]]:
        rows = client.sql(f"SELECT key, value, value_json FROM {table} WHERE run_uid = {uid} ORDER BY key",
                          entity=entity)
        return [(r["key"], r["value"] if r["value_json"] is None else r["value_json"])
                for r in rows.to_pylist()]

    print(render_run(run, pairs("config"), pairs("summary")), end="", file=_out())
    return EXIT_OK


def cmd_files(args: argparse.Namespace, settings: Settings) -> int:
    from .cli_files import cmd_files as files

    return files(args, settings, _out())


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    from .query.render import render_table, table_rows, to_csv, to_json

    if args.format == "parquet" and not args.output:
        raise CliError("--format parquet writes a file: add --output FILE")
    result = _fresh_sql(_client(settings), args.query, max_rows=args.max_rows, timeout=args.timeout,
                        entity=args.entity, server=args.server)
    if args.format == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(result.table, args.output)
        print(f"wrote {result.num_rows} row{'s' if result.num_rows != 1 else ''} to {args.output}", file=_err())
    else:
        if args.format == "json":
            text = to_json(result.table)
        elif args.format == "csv":
            text = to_csv(result.table)
        else:
            columns, rows = table_rows(result.table)
            text = render_table(columns, rows) + f"({result.num_rows} row{'s' if result.num_rows != 1 else ''})\n"
        if args.output:
            Path(args.output).write_text(text)
        else:
            print(text, end="", file=_out())
    if result.truncated:
        print(f"runstream: result truncated to {result.num_rows} rows; raise --max-rows for more",
              file=_err())
    return EXIT_OK


def _api(settings: Settings) -> Any:
    from .api import Api

    return Api(settings=settings)


def tail_line(row: dict[str, Any], keys: Sequence[str] | None = None) -> str:
    """One history step as a terminal line: ``step 3  acc 0.6  loss 0.25`` (pure)."""
    from .query.render import format_value

    names = keys if keys else sorted(k for k in row if not k.startswith("_"))
    parts = [f"step {row.get('_step')}"]
    parts += [f"{k} {format_value(row[k])}" for k in names if row.get(k) is not None]
    return "  ".join(parts)


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from .query.http_client import quote_path

    entity, project, run_id = _split_path(args.path, 3, "ENTITY/PROJECT/ID")
    keys = [k for k in (args.keys or "").split(",") if k] or None
    api = _api(settings)
    url = f"/api/runs/{quote_path(entity, project, run_id)}/history/events"
    for event in api.client.events(url, {"keys": ",".join(keys) if keys else None, "after_step": args.after}):
        if event.event == "history":
            print(tail_line(event.data, keys), file=_out(), flush=True)
        elif event.event == "state":
            print(f"runstream: {args.path} is {event.data.get('state')}", file=_err(), flush=True)
        elif event.event == "end":
            print(f"runstream: {args.path} {event.data.get('state')} at step {event.data.get('last_step')}",
                  file=_err(), flush=True)
            return EXIT_OK
    return EXIT_OK


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    from .logs import print_logs
    from .query.http_client import quote_path

    entity, project, run_id = _split_path(args.path, 3, "ENTITY/PROJECT/ID")
    url = f"/api/runs/{quote_path(entity, project, run_id)}/logs"
    state = print_logs(_api(settings).client, url, _out(), stream=args.stream, follow=args.follow)
    if args.follow:
        print(f"runstream: {args.path} is {state}", file=_err(), flush=True)
    return EXIT_OK


EXPORT_PAGE = 200_000


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    entity, project = _split_path(args.path, 2, "ENTITY/PROJECT")
    out = Path(args.output or f"{entity}-{project}")
    out.mkdir(parents=True, exist_ok=True)
    api = _api(settings)
    where = f"r.entity = {sql_literal(entity)} AND r.project = {sql_literal(project)} AND r.path IS NOT NULL"
    as_json = "json_group_object(key, coalesce(to_json(value), CAST(value_json AS JSON)))"
    runs = api.sql(f"SELECT r.*, (SELECT {as_json} FROM config c WHERE c.run_uid = r.run_uid) AS config, "
                   f"(SELECT {as_json} FROM summary s WHERE s.run_uid = r.run_uid) AS summary "
                   f"FROM runs r WHERE {where} ORDER BY r.created_at, r.path",
                   max_rows=1_000_000, timeout=300.0, pandas=False, entity=entity)
    if runs.num_rows == 0:
        raise CliError(f"no runs in {entity}/{project}; list projects with `runstream runs`")
    pq.write_table(runs, out / "runs.parquet")
    schema = pa.schema([("run_id", pa.string()), ("step", pa.int64()), ("key", pa.string()),
                        ("value", pa.float64()), ("value_json", pa.string()), ("timestamp", pa.float64())])
    points = 0
    with pq.ParquetWriter(out / "history.parquet", schema) as writer, _bar(runs.num_rows, "export") as bar:
        for uid, rid in zip(runs.column("run_uid").to_pylist(), runs.column("run_id").to_pylist(), strict=True):
            after = "step >= 0"
            while True:  # pages of EXPORT_PAGE rows, resumed after the last (step, key)
                page = api.sql(f"SELECT {sql_literal(rid)} AS run_id, step, key, value, value_json, timestamp "
                               f"FROM history WHERE run_uid = {sql_literal(uid)} AND ({after}) "
                               f"ORDER BY step, key LIMIT {EXPORT_PAGE}", max_rows=EXPORT_PAGE, timeout=300.0,
                               pandas=False, entity=entity)
                if page.num_rows == 0:
                    break
                writer.write_table(page.cast(schema))
                points += page.num_rows
                step, key = int(page.column("step")[-1].as_py()), str(page.column("key")[-1].as_py())
                after = f"step > {step} OR step = {step} AND key > {sql_literal(key)}"
            bar.update()
    print(f"exported {runs.num_rows} run{'s' if runs.num_rows != 1 else ''} and {points} history points "
          f"to {out}/runs.parquet and {out}/history.parquet", file=_out())
    return EXIT_OK


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    entity, project, run_id = _split_path(args.path, 3, "ENTITY/PROJECT/ID")
    reply = _api(settings).run(args.path).stop(requested_by=f"{getpass.getuser()} (runstream stop)")
    writers = reply.get("writers") or []
    print(f"stopped {entity}/{project}/{run_id}: {len(writers)} process{'es' if len(writers) != 1 else ''} "
          f"acknowledged ({', '.join(writers)}); the run ends killed", file=_out())
    return EXIT_OK


def alerts_table(alerts: list[dict[str, Any]], tz: Any = None) -> str:
    """Render alerts (newest first) as a table: time, run, level, title, delivery, text (pure)."""
    from .query.alert_reads import alert_status
    from .query.render import format_time, render_table

    rows = []
    for a in alerts:
        when = format_time(_epoch_time(a.get("timestamp")), tz)
        rows.append((when, a.get("path") or a.get("run_uid") or "", a.get("level") or "", a.get("title") or "",
                     alert_status(a), a.get("text") or ""))
    return render_table(["time", "run", "level", "title", "delivery", "text"], rows, max_col_width=60)


def _epoch_time(ts: Any) -> Any:
    from datetime import UTC, datetime

    return None if ts is None else datetime.fromtimestamp(float(ts), UTC)


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    api = _api(settings)
    parts = [p for p in (args.path or "").split("/") if p]
    if len(parts) == 3:
        alerts = api.run(args.path).alerts()
    elif len(parts) <= 2:
        alerts = api.alerts(args.path, limit=args.limit)
    else:
        raise CliError(f"expected ENTITY, ENTITY/PROJECT or ENTITY/PROJECT/ID, not {args.path!r}")
    if not alerts:
        print(f"no alerts{f' in {args.path}' if args.path else ''}", file=_out())
        return EXIT_OK
    print(alerts_table(alerts[: args.limit]), end="", file=_out())
    return EXIT_OK


# -- maintenance ----------------------------------------------------------------------------------


def _bar(total: int | None, label: str) -> Any:
    from .progress import ProgressBar

    return ProgressBar(total, label)


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from . import stack
    from .query.errors import ServerUnavailable

    if args.server:
        settings = settings.replace(server_name=args.server)
    try:
        client = _client(settings, start_stack=False)
        client.health()
    except ServerUnavailable:
        client = None
    if client is not None:
        bar = _bar(None, "replay")
        with bar:
            def progress(done: int, total: int) -> None:
                if total and bar.total is None:
                    bar.total = total
                bar.set(done)

            status = client.replay(progress)
        print(f"replayed the log up to stream seq {status.get('projected_seq')} into "
              f"{client.health()['db_path']}", file=_out())
        return EXIT_OK
    url = settings.nats_url
    if not url:
        st = stack.status(settings)
        url = st.nats_url if st.nats_alive else None
    if not url:
        raise CliError("replay reads the log from NATS, which is not running: "
                       "start the stack with `runstream up`")
    from .projector import replay_file

    db = stack.db_path(settings)
    with _bar(None, "replay") as bar:
        def file_progress(done: int, total: int | None = None) -> None:
            if total and bar.total is None:
                bar.total = total
            bar.set(done)

        seq = replay_file(db, url, progress=file_progress)
    print(f"replayed the log up to stream seq {seq} into {db}", file=_out())
    return EXIT_OK


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from .sync import find_spools, sync_paths

    if args.paths:
        paths = [Path(p) for p in args.paths]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise CliError(f"no such file or directory: {', '.join(missing)}")
    else:
        root = (settings.run_dir or Path.cwd()) / RUNS_FOLDER
        paths = find_spools(root)
        if not paths:
            print(f"nothing to sync: no run spools under {root}", file=_out())
            return EXIT_OK
    with _bar(None, "sync") as bar:
        def progress(done: int, total: int) -> None:
            if total and bar.total is None:
                bar.total = total
            bar.set(done)

        report = sync_paths(paths, settings, progress=progress)
    runs = report.runs if isinstance(report.runs, int) else len(report.runs)
    print(f"synced {runs} run{'s' if runs != 1 else ''}: {report.events_sent} events sent, "
          f"{report.already_acked} already acknowledged", file=_out())
    for error in report.errors or []:
        print(f"runstream: sync error: {error}", file=_err())
    return EXIT_ERROR if report.errors else EXIT_OK


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import main as demo_main

    code = demo_main()
    return int(code or 0)


# -- wiring ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``runstream`` argument parser with every subcommand."""
    p = argparse.ArgumentParser(prog="runstream",
                                description="runstream: experiment tracking on an event log.")
    p.add_argument("--dir", type=Path, default=None,
                   help="data directory of the local stack (default: RUNSTREAM_DIR or ~/.runstream)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    Command = Callable[[argparse.Namespace, Settings], int]

    def add(name: str, func: Command, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        return sp

    add("up", cmd_up, "start the local stack (nats-server + runstream server) if it is not running")
    add("down", cmd_down, "stop the local stack; the data stays on disk")
    add("status", cmd_status, "show the local stack: URL, pids, data dir, database, projector lag")
    sp = add("server", cmd_server, "run the runstream server (projector + query RPC) in the foreground")
    sp.add_argument("--nats-url", default=None,
                    help="NATS server with the log (default: RUNSTREAM_NATS_URL, else the local stack's)")
    sp.add_argument("--name", default=None,
                    help="server name in the RPC subjects rsctl.q.<name>.* (default: RUNSTREAM_SERVER_NAME)")
    sp.add_argument("--http-port", type=int, default=None,
                    help="HTTP API port on 127.0.0.1 (default: RUNSTREAM_HTTP_PORT or 14280; 0: any free; -1: none)")
    part = sp.add_mutually_exclusive_group()
    part.add_argument("--entities", default=None, metavar="E1,E2",
                      help="a partition: project and answer for these entities only (default: "
                           "RUNSTREAM_SERVER_ENTITIES, else every entity)")
    part.add_argument("--subjects", default=None, metavar="SUBJECTS",
                      help="a raw subject filter of the event stream, comma-separated (RUNSTREAM_SERVER_SUBJECTS)")
    sp = add("ui", cmd_ui, "open the web app in a browser (prints its URL; starts the local stack if needed)")
    sp.add_argument("--no-browser", action="store_true", help="only print the URL")
    sp = add("runs", cmd_runs, "list runs: path, name, state, created, runtime, summary")
    sp.add_argument("path", nargs="?", metavar="ENTITY/PROJECT",
                    help="only this project (PROJECT alone uses your default entity); default: all runs")
    sp.add_argument("--limit", type=int, default=100, help="show at most N runs (default 100)")
    sp = add("show", cmd_show, "show one run: state, name, times, config, summary, metadata")
    sp.add_argument("path", metavar="ENTITY/PROJECT/ID")
    sp = add("files", cmd_files, "list a run's files, or download them all with --download DIR")
    sp.add_argument("path", metavar="ENTITY/PROJECT/ID")
    sp.add_argument("--download", default=None, metavar="DIR", help="write every file under DIR")
    sp = add("sql", cmd_sql, "run one read-only SQL query over the projection")
    sp.add_argument("query", metavar="SQL", help='e.g. "SELECT path, state FROM runs"')
    sp.add_argument("--format", choices=("table", "json", "csv", "parquet"), default="table",
                    help="output format (parquet needs --output)")
    sp.add_argument("--output", "-o", default=None, metavar="FILE", help="write to FILE instead of stdout")
    sp.add_argument("--max-rows", type=int, default=10_000, help="row cap (default 10000)")
    sp.add_argument("--timeout", type=float, default=30.0, help="seconds before the query is interrupted")
    sp.add_argument("--entity", default=None,
                    help="partitioned servers: run it on a server holding this entity "
                         "(default: one holding every entity)")
    sp.add_argument("--server", default=None, metavar="NAME", help="run it on the server of this name")
    sp = add("tail", cmd_tail, "follow a run's metrics as it logs them (until it ends)")
    sp.add_argument("path", metavar="ENTITY/PROJECT/ID")
    sp.add_argument("--keys", default=None, help="comma-separated keys to show (default: all)")
    sp.add_argument("--after", type=int, default=-1, metavar="STEP", help="start after this step")
    sp = add("logs", cmd_logs, "print a run's console output (stdout and stderr); --follow until it ends")
    sp.add_argument("path", metavar="ENTITY/PROJECT/ID")
    sp.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until the run ends")
    sp.add_argument("--stream", choices=("stdout", "stderr"), default=None, help="only this stream")
    sp = add("export", cmd_export, "write a project's runs and history to Parquet (runs.parquet, history.parquet)")
    sp.add_argument("path", metavar="ENTITY/PROJECT")
    sp.add_argument("--output", "-o", default=None, metavar="DIR", help="folder (default: ENTITY-PROJECT)")
    sp = add("replay", cmd_replay, "rebuild the projection from the log (with a progress bar)")
    sp.add_argument("--server", default=None, metavar="NAME",
                    help="the server to rebuild (default: RUNSTREAM_SERVER_NAME or main)")
    sp = add("sync", cmd_sync, "send the spools of offline or interrupted runs")
    sp.add_argument("paths", nargs="*", metavar="PATH",
                    help="run folders or spools (default: every run under ./runstream)")
    add("demo", cmd_demo, "run a simulated training on the local stack and query it")
    sp = add("stop", cmd_stop, "stop a live run: its processes get a KeyboardInterrupt; it ends killed")
    sp.add_argument("path", metavar="ENTITY/PROJECT/ID")
    sp = add("alerts", cmd_alerts, "list alerts, newest first, with their delivery status per sink")
    sp.add_argument("path", nargs="?", metavar="PATH",
                    help="ENTITY, ENTITY/PROJECT or ENTITY/PROJECT/ID (default: all)")
    sp.add_argument("--limit", type=int, default=100, help="show at most N alerts (default 100)")
    from .cli_lifecycle import add_lifecycle_commands

    add_lifecycle_commands(add)  # delete, move
    from .cli_admin import add_admin_commands

    add_admin_commands(add)  # admin, login
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``runstream`` command line; return the exit code."""
    from .broker.errors import BrokerError
    from .errors import RunstreamError
    from .projector.errors import ProjectorError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(dir=args.dir)
    except (ValueError, TypeError) as e:
        print(f"runstream: bad settings: {e}", file=_err())
        return EXIT_USAGE
    try:
        return int(args.func(args, settings))
    except (CliError, RunstreamError, BrokerError, ProjectorError) as e:
        print(f"runstream: error: {e}", file=_err())
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("runstream: interrupted", file=_err())
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
