"""The environment snapshot: requirements.txt read from the metadata files' heads must say what
importlib.metadata's full parse says, distribution for distribution."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

from runstream.snapshot import _name_version, requirements


def test_requirements_match_the_full_metadata_parse() -> None:
    slow: dict[str, str] = {}
    for dist in metadata.distributions():
        if dist.name and dist.name.lower() not in slow:
            slow[dist.name.lower()] = f"{dist.name}=={dist.version}"
    assert requirements() == "".join(f"{line}\n" for _, line in sorted(slow.items()))
    assert "runstream==" in requirements() and "duckdb==" in requirements()


def test_a_metadata_file_without_the_headers_falls_back(tmp_path: Path) -> None:
    folder = tmp_path / "odd-1.0.dist-info"
    folder.mkdir()
    (folder / "METADATA").write_text("Metadata-Version: 2.1\n\nName: not-a-header\n")

    class Dist:
        _path = folder
        name = "odd"
        version = "1.0"

    odd: Any = Dist()
    assert _name_version(odd) == ("odd", "1.0")  # the body's "Name:" is not read as a header
