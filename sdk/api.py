"""``runstream.Api()``: read runs back, W&B-shaped, over the server's HTTP API.

    api = runstream.Api()                                   # the local stack (started if needed)
    api = runstream.Api(base_url="http://host:14280", api_key="...")   # a remote server
    for run in api.runs("nico/awesome-project", filters={"config.lr": {"$lt": 0.1}},
                        order="-summary_metrics.acc"):
        print(run.name, run.summary["acc"])
    run = api.run("nico/awesome-project/1jx1ud12")
    df = run.history(keys=["loss"])                          # pandas (pandas=False: Arrow)
    run.tags.append("best"); run.update()                    # a meta event in the log
    run.move("other-project"); run.delete()                  # move / delete events (lifecycle_client)
    api.sql("SELECT state, count(*) FROM runs GROUP BY ALL")

The URL comes from ``base_url``, else ``RUNSTREAM_API_URL`` (settings ``api_url``), else the local
stack's ``stack.json``; the key from ``api_key`` or ``RUNSTREAM_API_KEY``. Reads are fresh by
default: the server first waits (briefly) until its projection holds what the log holds.
pandas and polars are optional: imported only when asked for.
"""

from __future__ import annotations

import getpass
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

from .settings import Settings, load_settings

__all__ = ["Api", "Run", "Runs"]

EDITABLE = ("name", "notes", "tags", "group", "job_type")


def _to_frame(table: Any, format: str) -> Any:
    """An Arrow table as ``pandas``, ``polars`` or ``arrow``."""
    if format == "arrow":
        return table
    if format == "pandas":
        try:
            import pandas  # noqa: F401
        except ImportError as e:
            raise ImportError("pandas is not installed: `pip install pandas`, or pass pandas=False for an "
                              "Arrow table") from e
        return table.to_pandas()
    if format == "polars":
        try:
            import polars
        except ImportError as e:
            raise ImportError("polars is not installed: `pip install polars`, or use format='pandas' or "
                              "'arrow'") from e
        return polars.from_arrow(table)
    raise ValueError(f"format must be pandas, polars or arrow, not {format!r}")


class Api:
    """The runstream read API.

    Args:
        overrides: W&B compatibility: ``{"entity": ..., "project": ...}`` defaults for paths.
        base_url: a runstream server's HTTP URL (default: ``RUNSTREAM_API_URL``, else the local stack).
        api_key: the server's API key (default: ``RUNSTREAM_API_KEY``).
        timeout: seconds per request.
        fresh: reads wait until the server's projection holds what the log holds (read-your-writes).
        settings: runstream settings (default: arguments > environment > config file).
    """

    def __init__(self, overrides: dict[str, Any] | None = None, *, base_url: str | None = None,
                 api_key: str | None = None, timeout: float = 60.0, fresh: bool = True,
                 settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self.overrides = dict(overrides or {})
        self._base_url = base_url or self.settings.api_url
        self._api_key = api_key if api_key is not None else self.settings.api_key
        self.timeout = timeout
        self.fresh = fresh
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The HTTP client (resolving the local stack's URL, and starting it, on first use)."""
        if self._client is None:
            from .query.http_client import HttpClient

            url = self._base_url
            if not url:
                from .stack import http_url

                url = http_url(self.settings)
            self._client = HttpClient(url, self._api_key, self.timeout)
        return self._client

    @property
    def base_url(self) -> str:
        return str(self.client.base_url)

    @property
    def default_entity(self) -> str:
        return str(self.overrides.get("entity") or self.settings.entity or getpass.getuser())

    def _project_path(self, path: str | None) -> tuple[str, str]:
        parts = [p for p in (path or "").split("/") if p]
        if len(parts) == 2:
            return parts[0], parts[1]
        if len(parts) == 1:
            return self.default_entity, parts[0]
        if not parts and self.overrides.get("project"):
            return self.default_entity, str(self.overrides["project"])
        raise ValueError(f"expected 'entity/project' or 'project', not {path!r}")

    def _run_path(self, path: str) -> tuple[str, str, str]:
        parts = [p for p in path.split("/") if p]
        if len(parts) == 4 and parts[2] == "runs":  # entity/project/runs/id, as in W&B URLs
            parts = [parts[0], parts[1], parts[3]]
        if len(parts) == 2:
            parts = [self.default_entity, *parts]
        if len(parts) != 3:
            raise ValueError(f"expected 'entity/project/run_id', not {path!r}")
        return parts[0], parts[1], parts[2]

    def projects(self, entity: str | None = None) -> list[dict[str, Any]]:
        """Projects (with run counts), newest activity first."""
        reply = self.client.json("GET", "/api/projects", {"entity": entity, "fresh": self.fresh})
        return list(reply["projects"])

    def runs(self, path: str | None = None, filters: dict[str, Any] | None = None,
             order: str = "-created_at", per_page: int = 50) -> Runs:
        """The runs of a project matching ``filters`` (MongoDB-style) in ``order``, fetched lazily.

        Args:
            path: ``"entity/project"`` (or ``"project"`` with your default entity).
            filters: e.g. ``{"$and": [{"state": "finished"}, {"config.lr": {"$lte": 0.01}}]}``.
            order: ``-`` descending, ``+`` ascending: ``"-summary_metrics.loss"``, ``"+created_at"``.
            per_page: runs fetched per request.
        """
        entity, project = self._project_path(path)
        return Runs(self, entity, project, filters, order, per_page)

    def run(self, path: str) -> Run:
        """One run by ``"entity/project/run_id"``.

        Raises:
            NotFound: there is no such run.
        """
        from .query.http_client import quote_path

        entity, project, run_id = self._run_path(path)
        attrs = self.client.json("GET", f"/api/runs/{quote_path(entity, project, run_id)}", {"fresh": self.fresh})
        return Run(self, attrs)

    def group_history(self, path: str | None = None, *, group: str | None = None, job_type: str | None = None,
                      keys: Sequence[str] | None = None, filters: dict[str, Any] | None = None, by: str = "group",
                      pandas: bool = True, format: str | None = None) -> Any:
        """Metrics aggregated across the runs of each group, per step: ``group``, ``key``, ``_step``,
        ``runs``, ``mean``, ``min``, ``max``, ``std`` — what a grouped chart draws.

        Args:
            path: ``entity/project`` (default: the overrides' or your entity).
            group, job_type: only runs of this group / job type.
            keys: only these metrics.
            filters: a runs filter (as :meth:`runs` takes) narrowing the runs.
            by: aggregate per ``group`` (default) or per ``job_type``.
        """
        import json

        entity, project = self._project_path(path)
        from .query.http_client import quote_path

        table, _ = self.client.arrow("GET", f"/api/projects/{quote_path(entity, project)}/groups/history", {
            "group": group, "job_type": job_type, "by": by, "keys": None if keys is None else ",".join(keys),
            "filters": None if filters is None else json.dumps(filters), "fresh": self.fresh})
        return _to_frame(table, format or ("pandas" if pandas else "arrow"))

    def sql(self, query: str, *, max_rows: int = 10_000, timeout: float = 30.0, pandas: bool = True,
            format: str | None = None, entity: str | None = None) -> Any:
        """One read-only SQL query → a pandas DataFrame (``pandas=False``: an Arrow table; or
        ``format="polars"``). The table's ``truncated`` flag: ``api.last_truncated``.

        ``entity``: on a partitioned deployment (servers started with ``--entities``), run it on a
        server holding that entity; without it, a server holding every entity answers.

        Raises:
            QueryRefused: not a read, or it touched files, settings or extensions.
            QueryTimeout: it ran past ``timeout``; QueryError: anything else (the message says).
            NoServerForEntity: no running server holds ``entity`` (or, without one, every entity).
        """
        body: dict[str, Any] = {"sql": query, "max_rows": max_rows, "timeout": timeout, "fresh": self.fresh}
        if entity is not None:
            body["entity"] = entity
        table, headers = self.client.arrow("POST", "/api/sql", body=body)
        self.last_truncated = headers.get("x-runstream-truncated") == "true"
        return _to_frame(table, format or ("pandas" if pandas else "arrow"))

    def artifact(self, name: str, type: str | None = None) -> Any:
        """One artifact version: ``"entity/project/name:alias"`` (or ``:v3``; ``project/name`` and
        ``name`` use the default entity/project; no ``:`` means ``latest``).

        Raises:
            NotFound: no such artifact or version. UsageError: a malformed name.
        """
        from .api_files import ApiArtifact
        from .query.http_client import quote_path
        from .run_files import parse_ref

        entity, project, art, ref = parse_ref(name, self.default_entity, str(self.overrides.get("project") or ""))
        if not project:
            from .errors import UsageError

            raise UsageError(f"artifact {name!r}: give its project as 'entity/project/name:alias'")
        attrs = self.client.json("GET", f"/api/artifacts/{quote_path(entity, project, art, ref)}",
                                 {"fresh": self.fresh})
        if type is not None and attrs.get("type") != type:
            from .query.errors import NotFound

            raise NotFound(f"artifact {name!r} is of type {attrs.get('type')!r}, not {type!r}")
        return ApiArtifact(self.client, attrs)

    def health(self) -> dict[str, Any]:
        """The server's projection position and lag."""
        return dict(self.client.json("GET", "/api/health"))

    def alerts(self, path: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Alerts, newest first, with each sink's delivery status (``deliveries``).

        Args:
            path: ``"entity/project"``, ``"entity"`` alone, or None for every alert.
        """
        parts = [p for p in (path or "").split("/") if p]
        if len(parts) > 2:
            raise ValueError(f"expected 'entity/project' or 'entity', not {path!r} (a run: api.run(path).alerts())")
        params = {"entity": parts[0] if parts else None, "project": parts[1] if len(parts) > 1 else None,
                  "limit": limit, "fresh": self.fresh}
        return list(self.client.json("GET", "/api/alerts", params)["alerts"])
    def move_runs(self, path: str | None, project: str, *, run_ids: Sequence[str] | None = None,
                  filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Move runs of ``path`` (``"entity/project"``) to ``project`` of the same entity: those with
        ``run_ids``, else those matching ``filters`` (``{}``: all). Their events stay; their paths
        change, and their old ids stay reserved for them. Returns ``{from, to, ...}`` per run moved.

        Raises:
            Conflict: a target path is taken (nothing moved). NotFound: a run id is not there.
        """
        from .lifecycle_client import bulk

        return bulk(self, "move", path, run_ids, filters, {"project": project})

    def delete_runs(self, path: str | None, *, run_ids: Sequence[str] | None = None,
                    filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Delete runs of ``path`` (``"entity/project"``): those with ``run_ids``, else those matching
        ``filters`` (``{}``: all). Their events, rows and objects are purged for good, and their ids
        can never be used again. Returns ``{path, run_uid, purged, ...}`` per run.

        Raises:
            Conflict: a run has forks that are not deleted with it (nothing deleted).
            NotFound: a run id is not there.
        """
        from .lifecycle_client import bulk

        return bulk(self, "delete", path, run_ids, filters, {})


class Runs:
    """A lazy sequence of runs: pages are fetched as iteration reaches them."""

    def __init__(self, api: Api, entity: str, project: str, filters: dict[str, Any] | None, order: str,
                 per_page: int) -> None:
        self.api, self.entity, self.project = api, entity, project
        self.filters, self.order, self.per_page = filters, order, per_page
        self._runs: list[Run] = []
        self._total: int | None = None
        self._next: int | None = 0

    def _fetch(self) -> None:
        from .query.http_client import quote_path

        reply = self.api.client.json("GET", f"/api/projects/{quote_path(self.entity, self.project)}/runs", {
            "filters": self.filters, "order": self.order, "per_page": self.per_page, "offset": self._next,
            "fresh": self.api.fresh and self._next == 0})
        self._runs += [Run(self.api, attrs) for attrs in reply["runs"]]
        self._total = int(reply["total"])
        self._next = reply.get("next_offset")

    def __iter__(self) -> Iterator[Run]:
        i = 0
        while True:
            while i < len(self._runs):
                yield self._runs[i]
                i += 1
            if self._next is None:
                return
            self._fetch()

    def __len__(self) -> int:
        if self._total is None:
            self._fetch()
        return int(self._total or 0)

    def __getitem__(self, index: int) -> Run:
        if index < 0:
            index += len(self)
        while index >= len(self._runs) and self._next is not None:
            self._fetch()
        return self._runs[index]

    def __repr__(self) -> str:
        return f"<Runs {self.entity}/{self.project}>"

    def move(self, project: str) -> list[dict[str, Any]]:
        """Move every run of this selection (its filters) to ``project``; see :meth:`Api.move_runs`."""
        return self.api.move_runs(f"{self.entity}/{self.project}", project, filters=self.filters or {})

    def delete(self) -> list[dict[str, Any]]:
        """Delete every run of this selection (its filters; none: the whole project), for good;
        see :meth:`Api.delete_runs`."""
        return self.api.delete_runs(f"{self.entity}/{self.project}", filters=self.filters or {})


class Run:
    """One run as the server projected it. Edit ``name``, ``notes``, ``tags``, ``group`` or
    ``job_type`` and call :meth:`update` to record the change (a ``meta`` event in the log)."""

    def __init__(self, api: Api, attrs: dict[str, Any]) -> None:
        self._api = api
        self._load(attrs)

    def _load(self, attrs: dict[str, Any]) -> None:
        self._attrs = dict(attrs)
        self.name: str | None = attrs.get("name")
        self.notes: str | None = attrs.get("notes")
        self.tags: list[str] = list(attrs.get("tags") or [])
        self.group: str | None = attrs.get("group")
        self.job_type: str | None = attrs.get("job_type")
        self._saved = {k: _copy(getattr(self, k)) for k in EDITABLE}

    def __getattr__(self, name: str) -> Any:
        attrs = self.__dict__.get("_attrs") or {}
        if name in attrs:
            return attrs[name]
        raise AttributeError(f"Run has no attribute {name!r}")

    @property
    def id(self) -> str:
        return str(self._attrs["run_id"])

    @property
    def entity(self) -> str:
        return str(self._attrs["entity"])

    @property
    def project(self) -> str:
        return str(self._attrs["project"])

    @property
    def path(self) -> list[str]:
        """``[entity, project, run_id]``, as in W&B."""
        return [self.entity, self.project, self.id]

    @property
    def display_name(self) -> str | None:
        return self.name

    @property
    def url(self) -> str:
        """The run's page in the web app of the server this Api reads."""
        from .console import run_url

        return run_url(self._api.base_url, self.entity, self.project, self.id)

    @property
    def state(self) -> str:
        return str(self._attrs["state"])

    @property
    def config(self) -> dict[str, Any]:
        """``{key: value}``; nested keys are dotted (``optimizer.lr``)."""
        return dict(self._attrs.get("config") or {})

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self._attrs.get("summary") or {})

    @property
    def metadata(self) -> dict[str, Any] | None:
        return self._attrs.get("metadata")

    @property
    def created_at(self) -> str | None:
        return self._attrs.get("created_at")

    @property
    def heartbeat_at(self) -> str | None:
        return self._attrs.get("heartbeat_at")

    def _url(self, suffix: str = "") -> str:
        from .query.http_client import quote_path

        return f"/api/runs/{quote_path(self.entity, self.project, self.id)}{suffix}"

    def load(self) -> Run:
        """Fetch the run again (state, summary, edits...)."""
        self._load(self._api.client.json("GET", self._url(), {"fresh": self._api.fresh}))
        return self

    refresh = load

    def history(self, samples: int | None = None, keys: Sequence[str] | None = None, x_axis: str = "_step",
                pandas: bool = True, format: str | None = None, stream: str = "default", *,
                branch: int | None = None, as_of: Any = None) -> Any:
        """The run's history, one row per step: ``_step``, ``_timestamp``, ``_runtime`` and each key.

        A forked run's history holds its parent's rows up to the fork step (read in place, never
        copied); a rewound run's holds the rows up to the rewind step, then the new ones.

        ``stream="system"``: the system metrics instead, one row per sample: ``_timestamp``,
        ``_runtime``, ``_writer``, ``_label`` and each key (``system.cpu``, ``system.gpu.0.gpu``...).

        Args:
            samples: at most this many rows, evenly spaced (None: every row).
            keys: only these keys, and only steps that logged one of them (None: every key).
            x_axis: a column kept with ``keys`` (``_step`` by default).
            pandas: a pandas DataFrame; False: an Arrow table. ``format`` (``"pandas"``, ``"polars"``,
                ``"arrow"``) overrides it.
            branch: one branch of the history instead of the visible one: each rewind archives the
                current branch (see :meth:`branches`); 0 is the first.
            as_of: the history as it was at that moment, rebuilt from the log: an ``int`` is a stream
                sequence, a ``datetime``, ``float`` (epoch seconds) or ISO 8601 text a time.
        """
        if stream == "system":
            table, _ = self._api.client.arrow("GET", self._url("/system"), {
                "keys": None if keys is None else ",".join(keys), "samples": samples, "fresh": self._api.fresh})
            return _to_frame(table, format or ("pandas" if pandas else "arrow"))
        if stream != "default":
            raise ValueError(f"stream must be 'default' or 'system', not {stream!r}")
        wanted = None if keys is None else [*keys, *([x_axis] if x_axis not in keys else [])]
        table, _ = self._api.client.arrow("GET", self._url("/history"), {
            "keys": None if wanted is None else ",".join(wanted), "samples": samples, "fresh": self._api.fresh,
            "branch": branch, "as_of": _as_of(as_of)})
        return _to_frame(table, format or ("pandas" if pandas else "arrow"))

    def branches(self) -> list[dict[str, Any]]:
        """The history's branches: ``branch``, ``current``, ``min_step``, ``max_step``, ``steps``.
        A rewind archives the current branch (its rows stay readable with ``history(branch=...)``)."""
        return list(self._api.client.json("GET", self._url("/branches"), {"fresh": self._api.fresh})["branches"])

    def scan_history(self, keys: Sequence[str] | None = None, page_size: int = 1000,
                     min_step: int | None = None, max_step: int | None = None) -> Iterator[dict[str, Any]]:
        """Every history row (a dict per step), fetched ``page_size`` steps at a time.

        With ``keys``, only rows holding all of them (as in W&B), with those keys and ``_step``.
        """
        step = min_step
        first = True
        while True:
            table, _ = self._api.client.arrow("GET", self._url("/history"), {
                "keys": None if keys is None else ",".join(keys), "min_step": step, "max_step": max_step,
                "limit": page_size, "fresh": self._api.fresh and first})
            first = False
            for row in table.to_pylist():
                if keys is not None:
                    if any(row.get(k) is None for k in keys):
                        continue
                    row = {"_step": row["_step"], **{k: row[k] for k in keys}}
                yield row
            if table.num_rows < page_size:
                return
            step = int(table.column("_step")[-1].as_py()) + 1

    def files(self) -> list[Any]:
        """The run's files (:class:`~runstream.api_files.File`: name, size, sha256, ``download()``)."""
        from .api_files import File

        reply = self._api.client.json("GET", self._url("/files"), {"fresh": self._api.fresh})
        return [File(self._api.client, self._url(), f) for f in reply["files"]]

    def file(self, name: str) -> Any:
        """One run file by name.

        Raises:
            NotFound: the run has no such file.
        """
        for f in self.files():
            if f.name == name:
                return f
        from .query.errors import NotFound

        raise NotFound(f"run {'/'.join(self.path)} has no file {name!r}; run.files() lists them")

    def media(self, key: str | None = None, type: str | None = None) -> list[dict[str, Any]]:
        """The run's media (images, tables, histograms, ...): one dict per (key, step) with ``type``,
        ``path`` (the run file), ``sha256``, ``width``/``height``, ``rows``/``columns``, ``bins``,
        ``caption`` and the whole ``reference`` (parsed)."""
        import json

        reply = self._api.client.json("GET", self._url("/media"), {"key": key, "type": type,
                                                                   "fresh": self._api.fresh})
        rows = list(reply["media"])
        for r in rows:
            r["reference"] = json.loads(r["reference"]) if r.get("reference") else None
        return rows

    def media_table(self, key: str, step: int | None = None, pandas: bool = True) -> Any:
        """A logged ``Table`` in full (the last step that logged ``key`` unless ``step``): a pandas
        DataFrame, or an Arrow table with ``pandas=False``.

        Raises:
            NotFound: the run logged no table under ``key`` (at ``step``).
        """
        import io

        import pyarrow.parquet as pq

        found = [m for m in self.media(key, "table-file") if step is None or m["step"] == step]
        if not found:
            from .query.errors import NotFound

            raise NotFound(f"run {'/'.join(self.path)} logged no table {key!r}"
                           f"{'' if step is None else f' at step {step}'}; run.media() lists its media")
        buf = io.BytesIO()
        self._api.client.download(self._url("/files/" + urllib.parse.quote(found[-1]["path"])), buf)
        table = pq.read_table(io.BytesIO(buf.getvalue()))
        return table.to_pandas() if pandas else table

    def logged_artifacts(self) -> list[Any]:
        """Artifact versions this run logged."""
        return self._artifacts("output")

    def used_artifacts(self) -> list[Any]:
        """Artifact versions this run used (``run.use_artifact``)."""
        return self._artifacts("input")

    def _artifacts(self, role: str) -> list[Any]:
        from .api_files import ApiArtifact

        reply = self._api.client.json("GET", self._url("/artifacts"), {"role": role, "fresh": self._api.fresh})
        return [ApiArtifact(self._api.client, a) for a in reply["artifacts"]]
    def logs(self, stream: str | None = None, text: bool = False) -> Any:
        """The run's console output: a list of lines (dicts with ``writer``, ``label``, ``stream``,
        ``line``, ``timestamp``, ``text``) in the order they began; ``text=True``: one string, as
        the terminal showed it. ``stream``: ``"stdout"`` or ``"stderr"`` only."""
        params = {"stream": stream, "fresh": self._api.fresh}
        if text:
            with self._api.client._open("GET", self._url("/logs"), {**params, "format": "text"},
                                        accept="text/plain") as resp:
                return resp.read().decode("utf-8")
        return list(self._api.client.json("GET", self._url("/logs"), params)["lines"])

    def update(self, **changes: Any) -> Run:
        """Record edits of name, notes, tags, group or job type (attributes changed on this object,
        and/or keyword arguments) as a ``meta`` event; then reload the run."""
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise TypeError(f"update() can change {', '.join(EDITABLE)}; not {', '.join(sorted(unknown))}")
        for k, v in changes.items():
            setattr(self, k, v)
        edits = {k: getattr(self, k) for k in EDITABLE if getattr(self, k) != self._saved[k]}
        if edits:
            self._api.client.json("PATCH", self._url(), body=edits)
        return self.load()

    def stop(self, requested_by: str | None = None) -> dict[str, Any]:
        """Stop the run: each of its live processes gets a ``KeyboardInterrupt`` (which the script
        may catch to clean up) and the run ends ``killed``. The request is recorded in the log.

        Returns:
            ``{"writers": [...], "stream_seq": n, "projected": bool}``: the processes (writer ids)
            that acknowledged.

        Raises:
            RunNotAlive: no live process of the run answered (it has ended, or never started here).
        """
        who = requested_by or f"{getpass.getuser()} (runstream.Api)"
        return dict(self._api.client.json("POST", self._url("/stop"), body={"requested_by": who}))

    def alerts(self) -> list[dict[str, Any]]:
        """The run's alerts, newest first, each with ``deliveries`` (per sink: status, attempts, error)."""
        return list(self._api.client.json("GET", self._url("/alerts"), {"fresh": self._api.fresh})["alerts"])
    def move(self, project: str) -> Run:
        """Move the run to ``project`` of the same entity (a ``move`` event; its history, config and
        summary go with it, and its old id stays reserved for it); then reload it there.

        Raises:
            Conflict: the id is taken in ``project``.
        """
        reply = self._api.client.json("POST", self._url("/move"), body={"project": project})
        if reply["moved"]:
            self._attrs["project"] = project
        return self.load()

    def delete(self) -> dict[str, Any]:
        """Delete the run for good: a tombstone in the log, then its events, rows and objects are
        purged, and its id can never be used again. Returns what the server did.

        Raises:
            Conflict: the run has forks (delete them with it: :meth:`Api.delete_runs`).
        """
        reply = self._api.client.json("DELETE", self._url())
        return dict(reply["deleted"][0])

    def __repr__(self) -> str:
        return f"<Run {'/'.join(self.path)} ({self.state})>"


def _as_of(value: Any) -> str | None:
    """``as_of`` as the HTTP API takes it: digits for a stream sequence, else a time."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("as_of must be a stream sequence (int) or a time (datetime, epoch float, ISO text)")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    isoformat = getattr(value, "isoformat", None)
    if isoformat is not None:
        if getattr(value, "tzinfo", True) is None:
            return repr(value.timestamp())  # a naive datetime is local time, as datetime.timestamp() reads it
        return str(isoformat())
    if isinstance(value, str):
        return value
    raise TypeError(f"as_of must be a stream sequence (int) or a time (datetime, epoch float, ISO text), "
                    f"not {type(value).__name__}")


def _copy(v: Any) -> Any:
    return list(v) if isinstance(v, list) else v
