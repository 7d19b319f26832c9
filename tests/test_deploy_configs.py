"""``deploy/``: every template rendered for loopback values and checked.

The NATS node config is validated by ``nats-server -t`` and started as a three-node cluster; the
systemd units are parsed as INI files (and checked by ``systemd-analyze verify`` where it exists);
the compose file and the Kubernetes YAML are parsed with PyYAML and checked for what they must
hold. The placeholders of every template are the ones documented in ``deploy/README.md``."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path
from string import Template
from typing import Any

import pytest
import yaml

from runstream.broker.server import MAX_PAYLOAD, find_binary
from tests.cluster import DEPLOY, NODE_TEMPLATE, LocalCluster, placeholders, render

SYSTEMD = DEPLOY / "systemd"
K8S = DEPLOY / "kubernetes"
TEMPLATES = [NODE_TEMPLATE, SYSTEMD / "nats-server@.service", SYSTEMD / "runstream-server@.service",
             SYSTEMD / "runstream.env.example", DEPLOY / "compose.yaml", K8S / "nats-values.yaml",
             K8S / "runstream.yaml"]

NODE_PLACEHOLDERS = {"CLUSTER_NAME", "NODE_NAME", "CLIENT_HOST", "CLIENT_PORT", "CLIENT_ADVERTISE", "CLUSTER_HOST",
                     "CLUSTER_PORT", "MONITOR_HOST", "MONITOR_PORT", "ROUTES", "STORE_DIR"}
COMPOSE_NATS_URLS = "nats://n1:4222,nats://n2:4222,nats://n3:4222"
K8S_NATS_URLS = "nats://nats-0.nats-headless:4222,nats://nats-1.nats-headless:4222,nats://nats-2.nats-headless:4222"


def documented_placeholders() -> dict[str, str]:
    """``name -> 'used in' column`` of the placeholder table at the top of deploy/README.md."""
    out: dict[str, str] = {}
    for line in (DEPLOY / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            for name in re.findall(r"`([A-Z0-9_]+)`", cells[0]):
                out[name] = cells[1]
    return out


def unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit as INI: ``section -> [(key, value), ...]`` in order (keys may repeat, as
    ``Environment=`` does). Comments and blank lines are skipped; anything else is an error."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None and key.strip() == key and re.fullmatch(r"[A-Za-z]+", key), \
            f"line {n} is not `Key=value` inside a section: {raw!r}"
        current.append((key, value))
    return sections


def one(section: list[tuple[str, str]], key: str) -> str:
    values = [v for k, v in section if k == key]
    assert len(values) == 1, f"{key}= appears {len(values)} times"
    return values[0]


# -- placeholders ------------------------------------------------------------------------------------


def test_every_placeholder_is_documented_and_every_documented_one_is_used() -> None:
    documented = documented_placeholders()
    used: dict[str, set[str]] = {}
    for t in TEMPLATES:
        for name in placeholders(t.read_text()):
            used.setdefault(name, set()).add(t.name)
    assert set(used) == set(documented)
    for name, files in used.items():
        for f in files:  # the table's "used in" column names the files (or their family)
            stem = f.split(".")[0].rstrip("@")
            assert stem in documented[name] or (f.endswith(".service") and "systemd units" in documented[name]), \
                f"{name} is used in {f} but the README says: {documented[name]}"
    assert placeholders(NODE_TEMPLATE.read_text()) == NODE_PLACEHOLDERS


def test_the_compose_env_example_fills_every_compose_placeholder() -> None:
    env = dict(line.split("=", 1) for line in (DEPLOY / "compose.env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    assert set(env) == placeholders((DEPLOY / "compose.yaml").read_text())
    assert "4222" not in [env[f"CLIENT_PORT_{i}"] for i in (1, 2, 3)]


# -- the NATS node config ----------------------------------------------------------------------------


def _node_values(**over: Any) -> dict[str, Any]:
    values = {"CLUSTER_NAME": "rs", "NODE_NAME": "n1", "CLIENT_HOST": "127.0.0.1", "CLIENT_PORT": 14301,
              "CLIENT_ADVERTISE": "127.0.0.1:14301", "CLUSTER_HOST": "127.0.0.1", "CLUSTER_PORT": 14302,
              "MONITOR_HOST": "127.0.0.1", "MONITOR_PORT": 14303,
              "ROUTES": "nats-route://127.0.0.1:14302, nats-route://127.0.0.1:14312", "STORE_DIR": "/tmp/x"}
    values.update(over)
    return values


@pytest.mark.parametrize("kind", ["loopback", "compose"])
def test_the_rendered_node_config_is_valid_for_nats_server(kind: str, tmp_path: Path) -> None:
    values = _node_values() if kind == "loopback" else _node_values(
        CLIENT_HOST="0.0.0.0", CLIENT_PORT=4222, CLIENT_ADVERTISE="n1:4222", CLUSTER_HOST="0.0.0.0",
        CLUSTER_PORT=6222, MONITOR_HOST="0.0.0.0", MONITOR_PORT=8222, STORE_DIR="/data",
        ROUTES="nats-route://n1:6222, nats-route://n2:6222, nats-route://n3:6222")
    conf = tmp_path / "n1.conf"
    conf.write_text(render(NODE_TEMPLATE, values))
    out = subprocess.run([find_binary(), "-t", "-c", str(conf)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is valid" in out.stdout + out.stderr


def test_a_missing_value_is_an_error_not_an_empty_setting() -> None:
    values = _node_values()
    del values["ROUTES"]
    with pytest.raises(KeyError, match="ROUTES"):
        render(NODE_TEMPLATE, values)


@pytest.mark.slow
def test_three_nodes_started_from_the_rendered_config_run_with_its_settings(nats_cluster: LocalCluster) -> None:
    for n in nats_cluster.nodes:
        varz = nats_cluster.monitor(n.index, "/varz")
        assert varz["server_name"] == n.name
        assert varz["port"] == n.client_port
        assert varz["http_port"] == n.monitor_port
        assert varz["max_payload"] == MAX_PAYLOAD
        # every node's client_advertise, as clients learn them from INFO
        assert sorted(varz["connect_urls"]) == sorted(f"127.0.0.1:{m.client_port}" for m in nats_cluster.nodes)
        assert varz["cluster"]["name"] == "runstream-test"
        assert varz["cluster"]["cluster_port"] == n.cluster_port
        assert sorted(varz["cluster"]["urls"]) == sorted(f"127.0.0.1:{m.cluster_port}" for m in nats_cluster.nodes)
        jsz = nats_cluster.monitor(n.index, "/jsz")
        assert jsz["config"]["store_dir"] == str(n.store_dir / "jetstream")
        assert jsz["meta_cluster"]["cluster_size"] == 3
        assert n.conf_file.read_text() == render(NODE_TEMPLATE, n.values([m.route for m in nats_cluster.nodes]))


# -- systemd -----------------------------------------------------------------------------------------

UNIT_VALUES = {"NATS_BIN": "/opt/runstream/bin/nats-server", "RUNSTREAM_BIN": "/opt/runstream/bin/runstream",
               "RUN_USER": "runstream", "CONFIG_DIR": "/etc/runstream", "DATA_DIR": "/var/lib/runstream",
               "NATS_URLS": "nats://127.0.0.1:14301,nats://127.0.0.1:14311,nats://127.0.0.1:14321"}


def _instance(text: str, name: str) -> str:
    return text.replace("%i", name)


def test_the_nats_unit_runs_the_node_config_of_its_instance() -> None:
    text = render(SYSTEMD / "nats-server@.service", UNIT_VALUES)
    unit = unit_sections(_instance(text, "n2"))
    assert set(unit) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    assert one(service, "ExecStart") == "/opt/runstream/bin/nats-server -c /etc/runstream/nats/n2.conf"
    assert one(service, "Restart") == "always"
    assert one(service, "User") == "runstream"
    assert one(service, "KillSignal") == "SIGUSR2"
    assert one(unit["Install"], "WantedBy") == "multi-user.target"


def test_the_runstream_unit_gives_each_instance_its_name_and_dir_and_the_cluster() -> None:
    text = render(SYSTEMD / "runstream-server@.service", UNIT_VALUES)
    seen = []
    for name in ("server-a", "server-b"):
        service = unit_sections(_instance(text, name))["Service"]
        assert one(service, "Restart") == "always"
        env = dict(v.split("=", 1) for k, v in service if k == "Environment")
        assert env == {"RUNSTREAM_NATS_URL": UNIT_VALUES["NATS_URLS"], "RUNSTREAM_STREAM_REPLICAS": "3",
                       "RUNSTREAM_SERVER_NAME": name}
        assert one(service, "EnvironmentFile") == "-/etc/runstream/runstream.env"
        assert one(service, "ExecStart") == \
            f"/opt/runstream/bin/runstream --dir /var/lib/runstream/{name} server --name {name}"
        seen.append((env["RUNSTREAM_SERVER_NAME"], one(service, "ExecStart")))
    assert len(set(seen)) == 2


def test_the_env_file_example_sets_the_cluster() -> None:
    text = render(SYSTEMD / "runstream.env.example", UNIT_VALUES)
    env = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert env == {"RUNSTREAM_NATS_URL": UNIT_VALUES["NATS_URLS"], "RUNSTREAM_STREAM_REPLICAS": "3"}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_rendered_units(tmp_path: Path) -> None:
    """systemd's own parser: unknown keys, bad values and missing executables are reported."""
    bin_dir = Path(find_binary()).parent
    values = dict(UNIT_VALUES, NATS_BIN=find_binary(), RUNSTREAM_BIN=str(bin_dir / "runstream"), RUN_USER="root",
                  CONFIG_DIR=str(tmp_path), DATA_DIR=str(tmp_path / "data"))
    units = []
    for template, instance in (("nats-server@.service", "n1"), ("runstream-server@.service", "server-a")):
        (tmp_path / template).write_text(render(SYSTEMD / template, values))
        units.append(str(tmp_path / template.replace("@", f"@{instance}")))
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if "running in chroot" not in line.lower() and "offline" not in line.lower()]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def _unit_process(unit_text: str) -> tuple[list[str], dict[str, str]]:
    """What systemd would run for a rendered, instantiated unit: ``ExecStart`` split as a command
    line, and the environment from ``Environment=`` then ``EnvironmentFile=`` (which overrides)."""
    service = unit_sections(unit_text)["Service"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_")}
    env.update(dict(v.split("=", 1) for k, v in service if k == "Environment"))
    env_file = Path(one(service, "EnvironmentFile").lstrip("-"))
    if env_file.exists():
        env.update(dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                        if line and not line.startswith("#")))
    return shlex.split(one(service, "ExecStart")), env


@pytest.mark.slow
def test_the_rendered_server_unit_runs_replicas_that_create_the_streams_at_r3(nats_cluster: LocalCluster,
                                                                              tmp_path: Path) -> None:
    """The units' ExecStart and environment, run as systemd would (two instances) against the
    cluster rendered from deploy/nats/: each server starts with its own name and directory, the
    streams are created at three replicas, and `runstream status` (deploy/README.md's check)
    finds each server."""
    from runstream.broker.streams import log_stream_configs
    from runstream.query.server import DB_FILE, READY_FILE

    bin_dir = Path(find_binary()).parent
    values = dict(UNIT_VALUES, RUNSTREAM_BIN=str(bin_dir / "runstream"), CONFIG_DIR=str(tmp_path / "etc"),
                  DATA_DIR=str(tmp_path / "data"), NATS_URLS=nats_cluster.url_list)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "runstream.env").write_text(
        render(SYSTEMD / "runstream.env.example", values) + "RUNSTREAM_HTTP_PORT=0\n")
    text = render(SYSTEMD / "runstream-server@.service", values)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    envs: dict[str, dict[str, str]] = {}
    try:
        for name in ("server-a", "server-b"):
            cmd, envs[name] = _unit_process(_instance(text, name))
            with open(tmp_path / f"{name}.log", "wb") as log:
                procs[name] = subprocess.Popen(cmd, env=envs[name], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        for name, proc in procs.items():
            ready = tmp_path / "data" / name / READY_FILE

            def is_ready(proc: subprocess.Popen[bytes] = proc, ready: Path = ready, name: str = name) -> bool:
                assert proc.poll() is None, f"{name} exited: {(tmp_path / f'{name}.log').read_text()}"
                return ready.exists() and ready.read_text().strip() == str(proc.pid)

            nats_cluster.wait_for(is_ready, f"{name} to be ready", timeout=120)

        for cfg in log_stream_configs():
            leader = nats_cluster.wait_for(lambda cfg=cfg: nats_cluster.stream_leader(cfg["name"]),
                                           f"a leader of {cfg['name']}")
            detail = nats_cluster.stream_detail(nats_cluster.index_of(leader), cfg["name"])
            assert detail is not None
            peers = {leader} | {p["name"] for p in detail["cluster"]["replicas"]}
            assert peers == {"n1", "n2", "n3"}, cfg["name"]

        for name in procs:
            out = subprocess.run([str(bin_dir / "runstream"), "status"], env=envs[name], capture_output=True,
                                 text=True, timeout=120)
            assert out.returncode == 0, out.stdout + out.stderr
            assert str(tmp_path / "data" / name / DB_FILE) in out.stdout
        for name, proc in procs.items():
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, (tmp_path / f"{name}.log").read_text()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


# -- compose -----------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    env = dict(line.split("=", 1) for line in (DEPLOY / "compose.env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    env.update({f"CLIENT_PORT_{i}": str(14300 + i) for i in (1, 2, 3)})
    return dict(yaml.safe_load(Template((DEPLOY / "compose.yaml").read_text()).substitute(env)))


def test_compose_has_three_nats_nodes_with_jetstream_and_routes(tmp_path: Path) -> None:
    services = _compose()["services"]
    nodes = {k: v for k, v in services.items() if v["image"] == "nats:2.11-alpine"}
    assert sorted(nodes) == ["n1", "n2", "n3"]
    volumes = _compose()["volumes"]
    for i, (name, svc) in enumerate(sorted(nodes.items()), 1):
        assert svc["command"] == ["-c", "/etc/nats/nats.conf"]
        assert svc["restart"] == "always"
        assert svc["volumes"] == [f"./rendered/nats/{name}.conf:/etc/nats/nats.conf:ro", f"nats-{name}:/data"]
        assert f"nats-{name}" in volumes
        assert svc["ports"] == [f"{14300 + i}:4222", f"{18220 + i}:8222"]
    # the node config rendered with the compose values (deploy/README.md) uses that volume and those ports
    conf = render(NODE_TEMPLATE, _node_values(
        CLIENT_HOST="0.0.0.0", CLIENT_PORT=4222, CLIENT_ADVERTISE="n1:4222", CLUSTER_HOST="0.0.0.0",
        CLUSTER_PORT=6222, MONITOR_HOST="0.0.0.0", MONITOR_PORT=8222, STORE_DIR="/data",
        ROUTES="nats-route://n1:6222, nats-route://n2:6222, nats-route://n3:6222"))
    assert 'store_dir: "/data"' in conf
    assert 'listen: "0.0.0.0:4222"' in conf and 'http: "0.0.0.0:8222"' in conf
    assert "routes: [nats-route://n1:6222, nats-route://n2:6222, nats-route://n3:6222]" in conf
    assert "jetstream {" in conf


def test_compose_has_two_runstream_servers_with_their_own_names_and_volumes() -> None:
    compose = _compose()
    services = compose["services"]
    servers = {k: v for k, v in services.items() if v["image"] == "runstream:latest"}
    assert sorted(servers) == ["server-a", "server-b"]
    for name, svc in servers.items():
        assert svc["command"] == ["runstream", "--dir", "/data", "server", "--name", name]
        assert svc["environment"] == {"RUNSTREAM_NATS_URL": COMPOSE_NATS_URLS, "RUNSTREAM_STREAM_REPLICAS": "3",
                                      "RUNSTREAM_SERVER_NAME": name}
        assert svc["volumes"] == [f"runstream-{name}:/data"]
        assert f"runstream-{name}" in compose["volumes"]
        assert svc["restart"] == "always"
        assert svc["depends_on"] == ["n1", "n2", "n3"]
    urls = COMPOSE_NATS_URLS.split(",")
    assert [u.split("//")[1].split(":")[0] for u in urls] == ["n1", "n2", "n3"]


# -- Kubernetes --------------------------------------------------------------------------------------


def test_helm_values_make_a_three_node_jetstream_cluster_on_file_storage() -> None:
    values = yaml.safe_load(render(K8S / "nats-values.yaml", {"JS_STORAGE_SIZE": "10Gi"}))
    assert values["fullnameOverride"] == "nats"
    config = values["config"]
    assert config["cluster"]["enabled"] is True
    assert config["cluster"]["replicas"] == 3
    assert config["cluster"]["noAdvertise"] is False
    js = config["jetstream"]
    assert js["enabled"] is True
    assert js["fileStore"]["enabled"] is True
    assert js["fileStore"]["pvc"] == {"enabled": True, "size": "10Gi"}
    assert js["memoryStore"]["enabled"] is False
    assert config["monitor"] == {"enabled": True, "port": 8222}
    assert config["merge"] == {"max_payload": MAX_PAYLOAD}
    assert values["podTemplate"]["topologySpreadConstraints"]["kubernetes.io/hostname"]["maxSkew"] == 1


def test_the_runstream_statefulset_names_each_server_after_its_pod_with_its_own_volume() -> None:
    text = render(K8S / "runstream.yaml", {"RUNSTREAM_IMAGE": "runstream:0.1.0", "NATS_URLS": K8S_NATS_URLS,
                                           "HTTP_PORT": 14280, "DB_STORAGE_SIZE": "5Gi"})
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text)}
    assert sorted(docs) == [("Service", "runstream"), ("Service", "runstream-headless"), ("StatefulSet", "runstream")]
    sts = docs[("StatefulSet", "runstream")]["spec"]
    assert sts["serviceName"] == "runstream-headless"
    assert docs[("Service", "runstream-headless")]["spec"]["clusterIP"] == "None"
    labels = sts["template"]["metadata"]["labels"]
    assert sts["selector"]["matchLabels"] == labels
    for key in [("Service", "runstream"), ("Service", "runstream-headless")]:
        spec = docs[key]["spec"]
        assert spec["selector"] == labels
        assert spec["ports"] == [{"name": "http", "port": 14280, "targetPort": "http"}]
    (container,) = sts["template"]["spec"]["containers"]
    assert container["image"] == "runstream:0.1.0"
    assert container["command"] == ["runstream", "--dir", "/data", "server"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env == {"RUNSTREAM_SERVER_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
                   "RUNSTREAM_NATS_URL": K8S_NATS_URLS, "RUNSTREAM_STREAM_REPLICAS": "3",
                   "RUNSTREAM_HTTP_PORT": "14280", "RUNSTREAM_HTTP_HOST": "0.0.0.0",
                   "RUNSTREAM_API_KEY": {"secretKeyRef": {"name": "runstream-api-key", "key": "key"}}}
    assert container["ports"] == [{"name": "http", "containerPort": 14280}]
    assert container["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    (claim,) = sts["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    # the URL list names the pods the Helm values create: nats-0..2 behind nats-headless
    values = yaml.safe_load(render(K8S / "nats-values.yaml", {"JS_STORAGE_SIZE": "10Gi"}))
    name = values["fullnameOverride"]
    assert K8S_NATS_URLS == ",".join(f"nats://{name}-{i}.{name}-headless:4222"
                                     for i in range(values["config"]["cluster"]["replicas"]))
