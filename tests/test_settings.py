"""Settings: arguments beat the environment, which beats the config file; values are typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from runstream.settings import Settings, load_settings


def test_types_and_precedence(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('heartbeat_interval = 7\nmode = "offline"\nport = 15000\n')
    env = {"RUNSTREAM_DIR": str(tmp_path), "RUNSTREAM_HEARTBEAT_INTERVAL": "2.5", "RUNSTREAM_QUIET": "yes",
           "RUNSTREAM_RUN_DIR": "~/somewhere"}
    s = load_settings(env=env, crash_timeout=9)
    assert s.dir == tmp_path
    assert s.heartbeat_interval == 2.5 and isinstance(s.heartbeat_interval, float)  # env beats file
    assert s.mode == "offline"                                                      # from the file
    assert s.port == 15000 and isinstance(s.port, int)
    assert s.crash_timeout == 9.0 and isinstance(s.crash_timeout, float)            # argument
    assert s.quiet is True
    assert s.run_dir == Path("~/somewhere").expanduser()
    assert s.replace(quiet=False).quiet is False
    assert load_settings(env={"RUNSTREAM_DIR": str(tmp_path), "RUNSTREAM_QUIET": "0"}).quiet is False


def test_defaults_and_errors(tmp_path: Path) -> None:
    s = load_settings(env={"HOME": str(tmp_path)})
    assert s.dir == Path("~/.runstream").expanduser() and s.mode == "online" and s.embedded
    assert s.heartbeat_interval == 30.0 and s.crash_timeout == 300.0
    with pytest.raises(ValueError, match="mode"):
        load_settings(env={}, mode="sometimes")
    with pytest.raises(TypeError, match="unknown setting"):
        load_settings(env={}, colour="blue")
    assert not Settings(nats_url="nats://x:1").embedded
