from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import runstream
from runstream import metadata
from runstream.metadata import collect_metadata

ALWAYS = ("host", "os", "python", "python_executable", "program", "args", "command", "cwd",
          "cpu_count", "cpu_count_physical", "memory_total", "username", "runstream_version",
          "started_at")

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "trunk")
    (root / "train.py").write_text("print('hi')\n")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "first")
    git(root, "remote", "add", "origin", "https://user:s3cret@example.com/team/model.git")
    return root


def test_keys_present_and_json_serialisable(tmp_path: Path) -> None:
    now = dt.datetime(2025, 1, 20, 10, 11, 6, 123456, tzinfo=dt.UTC)
    meta = collect_metadata(tmp_path, argv=["train.py", "--lr", "0.1"], now=now)
    for key in ALWAYS:
        assert key in meta, key
    assert "errors" not in meta, meta.get("errors")
    assert meta["program"] == "train.py"
    assert meta["args"] == ["--lr", "0.1"]
    assert meta["command"].endswith("train.py --lr 0.1")
    assert meta["cwd"] == str(tmp_path)
    assert meta["python"] == ".".join(map(str, sys.version_info[:3]))
    assert meta["python_executable"] == sys.executable
    assert meta["runstream_version"] == runstream.__version__
    assert meta["started_at"] == "2025-01-20T10:11:06.123456Z"
    assert meta["cpu_count"] >= 1 and meta["memory_total"] > 0
    json.dumps(meta)


def test_defaults_to_process_cwd_and_argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["prog.py", "x"])
    meta = collect_metadata()
    assert meta["cwd"] == str(tmp_path)
    assert meta["program"] == "prog.py" and meta["args"] == ["x"]
    assert meta["started_at"].endswith("Z")


def test_git_fields_inside_a_repo(repo: Path) -> None:
    meta = collect_metadata(repo)
    g = meta["git"]
    assert g["root"] == str(repo.resolve())
    assert g["commit"] == git(repo, "rev-parse", "HEAD")
    assert g["branch"] == "trunk"
    assert g["remote"] == "https://example.com/team/model.git", "credentials must be stripped"
    assert g["dirty"] is False


def test_git_dirty_and_subdirectory(repo: Path) -> None:
    (repo / "train.py").write_text("print('changed')\n")
    sub = repo / "sub"
    sub.mkdir()
    g = collect_metadata(sub)["git"]
    assert g["dirty"] is True
    assert g["root"] == str(repo.resolve())


def test_untracked_files_do_not_make_it_dirty(repo: Path) -> None:
    (repo / "notes.txt").write_text("scratch")
    assert collect_metadata(repo)["git"]["dirty"] is False


def test_git_detached_head_and_no_remote(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "commit", "-q", "--allow-empty", "-m", "a")
    git(root, "checkout", "-q", "--detach")
    g = collect_metadata(root)["git"]
    assert g["branch"] is None and g["remote"] is None and len(g["commit"]) == 40


def test_git_repo_without_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    g = collect_metadata(tmp_path)["git"]
    assert g["commit"] is None and g["root"] == str(tmp_path.resolve())


def test_git_absent_outside_a_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    meta = collect_metadata(tmp_path)
    assert "git" not in meta and "errors" not in meta


def test_git_not_installed(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(repo / "no-such-bin"))
    meta = collect_metadata(repo)
    assert "git" not in meta and "errors" not in meta
    assert meta["host"]


def test_missing_working_directory_is_not_fatal(tmp_path: Path) -> None:
    meta = collect_metadata(tmp_path / "gone")
    assert "git" not in meta and meta["host"]


def test_gpu_absent_when_pynvml_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    monkeypatch.setattr(metadata, "_nvidia_driver_absent", lambda: False)
    meta = collect_metadata(tmp_path)
    assert "gpu_count" not in meta and "gpu_names" not in meta and "errors" not in meta


def test_gpu_fields_match_the_machine(tmp_path: Path) -> None:
    """No driver → no gpu fields and no error; a driver (NVML works) → count and names."""
    meta = collect_metadata(tmp_path)
    assert "errors" not in meta
    try:
        subprocess.run(["nvidia-smi", "-L"], check=True, capture_output=True, timeout=10)
        has_gpu = True
    except (OSError, subprocess.SubprocessError):
        has_gpu = False
    if has_gpu:
        assert meta["gpu_count"] == len(meta["gpu_names"]) >= 1
    else:
        assert "gpu_count" not in meta


def test_nvml_init_failure_gives_no_gpu_fields(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Past the driver check, a real pynvml whose library is missing or whose init fails."""
    monkeypatch.setattr(metadata, "_nvidia_driver_absent", lambda: False)
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    meta = collect_metadata(tmp_path)
    assert "errors" not in meta
    assert ("gpu_count" in meta) == ("gpu_names" in meta)


def test_is_fast(repo: Path) -> None:
    collect_metadata(repo)  # warm the imports (psutil)
    t0 = time.perf_counter()
    collect_metadata(repo)
    assert time.perf_counter() - t0 < 0.5  # ~15 ms here; generous for loaded CI machines


def test_strip_credentials() -> None:
    assert metadata._strip_credentials("https://a:b@h.com/x.git") == "https://h.com/x.git"
    assert metadata._strip_credentials("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert metadata._pick_remote("remote.up.url u1\nremote.origin.url o1\n") == "o1"
    assert metadata._pick_remote("remote.up.url u1\n") == "u1"
    assert metadata._pick_remote("") is None


def test_hanging_git_times_out_and_is_reaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A git that hangs (network filesystem, credential prompt): no git fields, an error noted, fast."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "git"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(metadata, "GIT_TIMEOUT", 0.2)
    (tmp_path / ".git").mkdir()  # looks like a work tree: git is asked
    t0 = time.perf_counter()
    meta = collect_metadata(tmp_path)
    assert time.perf_counter() - t0 < 5
    assert "git" not in meta
    assert any(e.startswith("git: TimeoutExpired") for e in meta["errors"])
    assert meta["host"] and meta["started_at"]


def test_git_is_asked_only_inside_a_work_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runstream.gitdir import in_work_tree

    monkeypatch.delenv("GIT_DIR", raising=False)
    outside = tmp_path / "plain" / "deep"
    outside.mkdir(parents=True)
    assert not in_work_tree(outside)
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src" / "pkg").mkdir(parents=True)
    assert in_work_tree(repo / "src" / "pkg")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / ".git").write_text("gitdir: ../repo/.git/worktrees/linked\n")  # a linked work tree's file
    assert in_work_tree(linked)
    monkeypatch.setenv("GIT_DIR", str(repo / ".git"))
    assert in_work_tree(outside)
