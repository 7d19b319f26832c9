"""``runstream admin users|teams|keys`` and ``runstream login`` against a broker that requires
credentials (issue 13): the server role manages identities, keys are shown once, listed by prefix,
revoked; a user's key is refused the identities bucket by the broker."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from runstream.broker.nats_auth import SERVER_USER
from runstream.cli import main
from runstream.settings import load_settings

from .conftest import run_async, wait_for
from .test_nats_auth import SecuredBroker, _can_connect, broker  # noqa: F401  (fixture)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_admin_commands_manage_users_teams_and_keys(broker: SecuredBroker, tmp_path: Path,  # noqa: F811
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RUNSTREAM_NATS_URL", broker.url)
    monkeypatch.setenv("RUNSTREAM_DIR", str(tmp_path / "admin"))
    monkeypatch.setenv("RUNSTREAM_NATS_USER", SERVER_USER)
    monkeypatch.setenv("RUNSTREAM_NATS_PASSWORD", broker.server_password)
    assert _run(capsys, "admin", "users", "add", "carol") == (0, "user carol added\n", "")
    assert _run(capsys, "admin", "users", "add", "carol")[0] == 1
    assert _run(capsys, "admin", "teams", "add", "vision") == (0, "team vision added\n", "")
    assert _run(capsys, "admin", "teams", "member", "vision", "carol", "viewer") == (
        0, "carol is viewer of vision\n", "")
    code, out, _ = _run(capsys, "admin", "teams", "list")
    assert (code, out) == (0, "vision\tcarol:viewer\n")
    code, out, _ = _run(capsys, "admin", "keys", "create", "carol")
    assert code == 0
    head, key = out.splitlines()
    m = re.fullmatch(r"rsk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", key)
    assert m is not None
    prefix = "_".join(key.split("_")[:2])
    assert head == f"key {prefix} for carol (shown once; store it, e.g. `runstream login`):"
    code, out, _ = _run(capsys, "admin", "keys", "list", "carol")
    assert code == 0 and out.startswith(f"{prefix}\tcarol\tcreated ") and out.endswith("\tlast used -\tactive\n")
    assert key not in out
    run_async(broker.sync())
    wait_for(lambda: _can_connect(broker.url, prefix, key), what="carol's key to be accepted")

    # login: 0600, and the settings present the key from then on
    login_dir = tmp_path / "carol"
    monkeypatch.setenv("RUNSTREAM_DIR", str(login_dir))
    monkeypatch.delenv("RUNSTREAM_NATS_USER")
    monkeypatch.delenv("RUNSTREAM_NATS_PASSWORD")
    assert _run(capsys, "login", key) == (0, f"runstream: key {prefix} stored in {login_dir / 'login'} (0600)\n", "")
    assert stat.S_IMODE((login_dir / "login").stat().st_mode) == 0o600
    s = load_settings()
    assert (s.nats_user, s.nats_password) == (prefix, key)
    assert _run(capsys, "login", "not-a-key")[0] == 1

    # carol's key may not touch the identities bucket: the broker refuses, the command says so
    code, _, err = _run(capsys, "admin", "users", "add", "mallory", "--admin")
    assert code == 1 and "need the server role's or an admin user's key" in err

    monkeypatch.setenv("RUNSTREAM_NATS_USER", SERVER_USER)
    monkeypatch.setenv("RUNSTREAM_NATS_PASSWORD", broker.server_password)
    assert _run(capsys, "admin", "keys", "revoke", prefix) == (0, f"key {prefix} of carol revoked\n", "")
    code, out, _ = _run(capsys, "admin", "keys", "list")
    assert code == 0 and "\trevoked " in out
    code, out, _ = _run(capsys, "admin", "users", "list")
    assert code == 0 and [line.split("\t")[:2] for line in out.splitlines()] == [["carol", "user"]]
    run_async(broker.sync())
    wait_for(lambda: not _can_connect(broker.url, prefix, key), what="the revoked key to be refused")
