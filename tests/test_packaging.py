"""The distribution as a user gets it: build the wheel, install it in a fresh venv, import it.

The source tree maps folders to packages (sdk/ → runstream, broker/ → runstream.broker, ...); a
mistake there would ship generic top-level names such as ``sdk`` or ``query`` into site-packages, or
miss a subpackage. Only a real wheel in a real venv shows it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "sdk", "broker", "projector", "query")
SUBPACKAGES = ("runstream", "runstream.broker", "runstream.projector", "runstream.query")
FORBIDDEN_TOP_LEVEL = ("sdk", "broker", "projector", "query", "tests", "deploy")


def run(*cmd: str | Path, cwd: Path, timeout: float = 600) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    what = " ".join(map(str, cmd))
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build from a copy of the sources, so the shared tree gets no build/ or egg-info."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        elif path.exists():
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--wheel", "--outdir", out, src, cwd=src)
    (whl,) = out.glob("runstream-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_holds_only_the_runstream_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"runstream", next(t for t in tops if t.endswith(".dist-info"))}, tops
    for pkg in SUBPACKAGES:
        assert pkg.replace(".", "/") + "/__init__.py" in names, pkg
    for page in ("home.html", "workspace.html", "run.html", "sql.html", "common.js", "app.css"):
        assert f"runstream/query/static/{page}" in names, page  # the web app ships as package data
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "runstream = runstream.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_wheel_installs_and_imports_in_a_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    py = venv / "bin" / "python"
    run(py, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel, cwd=tmp_path)

    # run from tmp_path so the source folders cannot shadow the installed package
    code = (
        "import importlib, pathlib, runstream, sysconfig\n"
        f"for name in {SUBPACKAGES!r}:\n"
        "    mod = importlib.import_module(name)\n"
        "    assert 'site-packages' in mod.__file__, mod.__file__\n"
        "print(runstream.__version__)\n"
        "print(sysconfig.get_paths()['purelib'])\n"
    )
    version, purelib = run(py, "-c", code, cwd=tmp_path).split()
    assert version

    assert (venv / "bin" / "runstream").is_file(), "console script missing"
    site = Path(purelib)
    leaked = [n for n in FORBIDDEN_TOP_LEVEL if (site / n).exists() or (site / f"{n}.py").exists()]
    assert not leaked, f"generic top-level names in site-packages: {leaked}"
    assert (site / "runstream" / "broker" / "__init__.py").is_file()
