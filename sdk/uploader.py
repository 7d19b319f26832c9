"""The run's uploader thread: files and artifacts go to the object store off the training thread.

``run.save()`` and ``run.log_artifact()`` spool their intent and hand a job to this thread; they
never wait for it (``log()`` never does either). The thread has its own blocking NATS connection
(:class:`~runstream.broker.miniclient.MiniNats`), retries through broker outages with backoff,
watches ``live`` files for changes (size or mtime) every :data:`LIVE_POLL` seconds, and at
``finish()`` uploads the ``end`` files and drains, bounded by the finish timeout. What it could not
do stays in the spool for ``runstream sync`` (:mod:`.uploads`). Offline runs only spool intents.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from .uploads import expand, log_artifact, store_file

LIVE_POLL = 1.0
"""Seconds between checks of ``live`` files for changes."""


class _Job:
    __slots__ = ("artifact", "kind", "paths", "spec", "upload_id")

    def __init__(self, upload_id: str, kind: str, spec: dict[str, Any], artifact: Any = None,
                 paths: list[tuple[Path, str]] | None = None) -> None:
        self.upload_id, self.kind, self.spec, self.artifact, self.paths = upload_id, kind, spec, artifact, paths


class Uploader(threading.Thread):
    """Background uploads of one run (see module).

    Args:
        run: the :class:`~runstream.run.Run` (its spool and ``_append_event``).
        url: the NATS URL, or None when offline.
    """

    def __init__(self, run: Any, url: str | None, snapshot: bool = False) -> None:
        super().__init__(name=f"runstream-uploads-{run.id}", daemon=True)
        self.run_ = run
        self.url = url
        self.synced_files: set[str] = set()
        """Names of the run files stored (for the closing ``Synced`` line)."""
        self.synced_artifact_files = 0
        self._cv = threading.Condition()
        self._jobs: deque[_Job] = deque()
        self._busy = 0
        self._end: list[_Job] = []
        self._live: list[_Job] = []
        self._stat: dict[str, tuple[int, int]] = {}
        self._known: dict[str, str] = {}
        self._stopping = False
        self._deadline: float | None = None
        self.errors: list[str] = []
        self.last_error: Exception | None = None
        self._client: Any = None
        self._snapshot = snapshot

    # -- the user thread ---------------------------------------------------------------------------

    def submit(self, upload_id: str, kind: str, spec: dict[str, Any], artifact: Any = None) -> None:
        job = _Job(upload_id, kind, spec, artifact)
        with self._cv:
            if kind == "files" and spec["policy"] == "end":
                self._end.append(job)
            else:
                self._jobs.append(job)
                if kind == "files" and spec["policy"] == "live":
                    self._live.append(job)
            self._cv.notify_all()

    def pending(self) -> int:
        """Jobs not done yet (queued, running, or ``end`` files before ``finish``)."""
        with self._cv:
            return len(self._jobs) + self._busy + len(self._end)

    def finish(self, timeout: float) -> bool:
        """Queue the ``end`` files and a last look at ``live`` ones, drain (at most ``timeout`` s),
        stop. True when everything was done."""
        with self._cv:
            self._jobs.extend(self._end)
            self._end = []
            self._jobs.extend(_Job(j.upload_id, j.kind, j.spec) for j in self._live)
            self._live = []
            self._deadline = time.monotonic() + timeout
            self._stopping = True
            self._cv.notify_all()
        self.join(timeout + 5)  # offline too: the snapshot may still be spooling its intents
        return self.url is not None and self.pending() == 0

    # -- the thread --------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            if self._snapshot:
                self._take_snapshot()
            self._loop()
        finally:
            if self._client is not None:
                self._client.close()

    def _loop(self) -> None:
        delay = 0.05
        next_poll = time.monotonic() + LIVE_POLL
        while True:
            with self._cv:
                while not self._jobs and not self._stopping and time.monotonic() < next_poll:
                    self._cv.wait(max(0.0, next_poll - time.monotonic()))
                if self._stopping and (not self._jobs or self.url is None or self._past_deadline()):
                    return
                job = self._jobs.popleft() if self._jobs else None
                if job is not None:
                    self._busy += 1
            if job is None:
                self._poll_live()
                next_poll = time.monotonic() + LIVE_POLL
                continue
            if self.url is None:  # offline: the intent is spooled; `runstream sync` does it
                with self._cv:
                    self._busy -= 1
                continue
            try:
                self._do(job)
                delay = 0.05
                retry = False
            except Exception as e:
                retry = self._retriable(e)
                if not retry:
                    self._fail(job, e)
                else:
                    self.last_error = e
                    if self._client is not None:
                        self._client.close()
            with self._cv:
                self._busy -= 1
                if retry:
                    self._jobs.appendleft(job)
            if retry:
                if self._stopping and self._past_deadline():
                    return
                with self._cv:
                    self._cv.wait(delay)
                delay = min(delay * 2, 2.0)

    def _take_snapshot(self) -> None:
        from .run_files import save_intent
        from .snapshot import SNAPSHOT_DIR, write_snapshot
        from .uploads import file_spec

        run = self.run_
        try:
            files = write_snapshot(run.dir, Path.cwd())
        except Exception as e:  # best effort, like the metadata: the run goes on without it
            self.errors.append(f"runstream: run {run.path}: code snapshot failed: {e}")
            return
        for path in files:
            spec = file_spec(str(path), str(run.dir / SNAPSHOT_DIR), str(run.dir), "now")
            self.submit(save_intent(run, spec), "files", spec)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline

    @staticmethod
    def _retriable(e: Exception) -> bool:
        from .broker.errors import BrokerError
        from .broker.objects import ObjectError

        return isinstance(e, BrokerError | OSError | TimeoutError) and not isinstance(e, ObjectError) \
            and not isinstance(e, FileNotFoundError)

    def _fail(self, job: _Job, e: Exception) -> None:
        what = job.spec.get("pattern") or job.spec.get("name")
        msg = f"runstream: run {self.run_.path}: could not upload {what!r}: {e}"
        self.errors.append(msg)
        sys.stderr.write(msg + "\n")
        if job.artifact is not None:
            job.artifact._done(None, None, e)

    def _connect(self) -> tuple[Any, Any]:
        from .broker.artifact_kv import ArtifactKV
        from .broker.miniclient import MiniNats
        from .broker.objects import ObjectStore

        if self._client is None:
            s = self.run_.settings
            self._client = MiniNats.for_settings(self.url or "", s, name=f"runstream-uploads {self.run_.id}")
        if not self._client.connected:
            self._client.connect()
        return ObjectStore(self._client), ArtifactKV(self._client)

    def _emit(self, type_: str, body: dict[str, Any]) -> int:
        if self.run_._finished:
            from .errors import UsageError

            raise UsageError("the run finished before this upload was done; `runstream sync` sends it")
        seq = int(self.run_._append_event(type_, body))
        self.run_._wake()
        if type_ == "file":
            self.synced_files.add(str(body.get("name")))
        elif type_ == "artifact":
            self.synced_artifact_files += len(body.get("entries") or {})
        return seq

    def _do(self, job: _Job) -> None:
        store, kv = self._connect()
        if job.kind == "files":
            for path, name in (job.paths if job.paths is not None else expand(job.spec)):
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                store_file(store, path, name, job.spec["policy"], job.upload_id, self._emit, self._known)
                self._stat[str(path)] = (st.st_size, st.st_mtime_ns)
        elif job.kind == "artifact":
            run = self.run_
            version, digest = log_artifact(store, kv, run.entity, run.project, run.uid, job.upload_id, job.spec,
                                           self._emit)
            if job.artifact is not None:
                job.artifact._done(version, digest)

    def _poll_live(self) -> None:
        with self._cv:
            live = list(self._live)
        for job in live:
            changed: list[tuple[Path, str]] = []
            for path, name in expand(job.spec):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if self._stat.get(str(path)) != (st.st_size, st.st_mtime_ns):
                    changed.append((path, name))
            if changed:
                with self._cv:
                    self._jobs.append(_Job(job.upload_id, "files", job.spec, paths=changed))
