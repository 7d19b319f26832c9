"""A stored file or artifact entry name can never escape the download root (pure, plus symlinks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runstream.api_files import File
from runstream.artifact import Artifact
from runstream.errors import UsageError
from runstream.filenames import MAX_NAME_CHARS, check_alias, check_artifact_name, check_name, safe_destination
from runstream.run_files import download_files, parse_ref

EVIL = [
    "../etc/passwd", "a/../../b", "..", ".", "./a", "a/./b", "/etc/passwd", "//server/share", "a//b", "a/",
    "C:\\Windows\\win.ini", "C:/x", "a\\..\\b", "..\\x", "nul\x00byte", "line\nbreak", "tab\tname",
    "\u202eevil.txt",            # right-to-left override
    "zero\u200bwidth",           # zero-width space
    "\uff0e\uff0e/x",            # fullwidth dots: NFKC makes them '..'
    "a\uff0fb/..\uff0f..",       # fullwidth solidus
    "\u2024\u2024/x",            # one-dot leaders: NFKC '..'
    "a\u2028b", " lead", "trail ", "x" * (MAX_NAME_CHARS + 1), "d/" + "y" * 256, "",
]


@pytest.mark.parametrize("name", EVIL)
def test_bad_names_are_refused_everywhere(name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        check_name(name)
    with pytest.raises(UsageError):
        safe_destination(tmp_path / "root", name)
    a = Artifact("a", "t")
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError):
        a.add_file(tmp_path / "f", name=name)
    with pytest.raises(UsageError):       # a manifest from the store is checked again on download
        download_files(None, {name: {"digest": "0" * 64, "size": 1}}, tmp_path / "root")
    with pytest.raises(UsageError):       # and a Files-list name from the server
        File(None, "/api/runs/e/p/r", {"name": name, "size": 1, "sha256": "0" * 64}).download(tmp_path / "root")
    assert not any(p for p in tmp_path.parent.rglob("passwd"))


@pytest.mark.parametrize("name", ["a.txt", "dir/sub/file.bin", "ünïcødé/名前.txt", "with space.txt", "a..b",
                                  ".hidden", "x" * 255])
def test_good_names_pass(name: str, tmp_path: Path) -> None:
    assert check_name(name) == name
    dest = safe_destination(tmp_path, name)
    assert dest == tmp_path.resolve() / name and dest.parent.is_dir()


def test_symlinks_at_the_destination_are_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UsageError, match="symlink"):
        safe_destination(root, "link/file.txt")
    (root / "file.txt").symlink_to(outside / "target.txt")
    with pytest.raises(UsageError, match="symlink"):
        safe_destination(root, "file.txt")
    assert list(outside.iterdir()) == []


def test_add_dir_skips_symlinks_in_the_source(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "real.txt").write_text("ok")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not ship")
    (src / "leak.txt").symlink_to(secret)
    (src / "leakdir").symlink_to(tmp_path, target_is_directory=True)
    a = Artifact("a", "t")
    a.add_dir(src)
    assert sorted(a._files) == ["real.txt"]


def test_artifact_names_aliases_and_refs() -> None:
    for bad in ("", "a/b", "a:b", "../x", "-x", "x" * 129, "a b"):
        with pytest.raises(UsageError):
            check_artifact_name(bad)
    with pytest.raises(UsageError, match="version"):
        check_alias("v3")
    assert parse_ref("e/p/n:best", "de", "dp") == ("e", "p", "n", "best")
    assert parse_ref("n", "de", "dp") == ("de", "dp", "n", "latest")
    assert parse_ref("p/n:v2", "de", "dp") == ("de", "p", "n", "v2")
    with pytest.raises(UsageError):
        parse_ref("a/b/c/d:v1", "de", "dp")
    a = Artifact("a", "t")
    with pytest.raises(UsageError, match="URI"):
        a.add_reference("not a uri")
    a.add_reference("s3://b/k")
    with pytest.raises(UsageError, match="already has"):
        a.add_reference("s3://other/k")


def test_entry_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runstream.artifact as artifact

    monkeypatch.setattr(artifact, "MAX_FILES_PER_ARTIFACT", 3)
    a = Artifact("a", "t")
    for i in range(3):
        a.add_reference(f"s3://b/{i}")
    with pytest.raises(UsageError, match="limit"):
        a.add_reference("s3://b/3")
    assert os.path.exists(tmp_path)
