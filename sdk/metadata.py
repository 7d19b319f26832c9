"""Run metadata recorded at ``init()``: host, OS, Python, command, git, hardware, user, version.

:func:`collect_metadata` never raises and takes a few tens of milliseconds (the git commands run in
parallel with short timeouts); the SDK calls it on its background thread. Anything that cannot be
found is left out rather than filled with a placeholder; unexpected failures are listed under
``"errors"`` so that they are visible in the run's metadata instead of silently lost.

Keys (all optional except where noted)::

    host                str     network name of the machine                       (always)
    os                  str     platform string, e.g. "Linux-6.8.0-x86_64-with-glibc2.39" (always)
    python              str     Python version, e.g. "3.11.7"                     (always)
    python_executable   str     sys.executable                                    (always)
    program             str     sys.argv[0] (the script, or "-c" / "" for interactive)
    args                list    sys.argv[1:]
    command             str     the whole command line, shell-quoted
    cwd                 str     working directory
    git                 dict    remote, commit, branch, dirty, root — absent outside a git work tree
    cpu_count           int     logical CPUs
    cpu_count_physical  int     physical cores
    memory_total        int     bytes of RAM
    gpu_count, gpu_names        NVIDIA GPUs seen by NVML — absent when there is none or no driver
    username            str
    runstream_version   str                                                       (always)
    started_at          str     ISO 8601 UTC, e.g. "2025-01-20T10:11:06.123456Z"  (always)
    errors              list    "<section>: <error>" for sections that failed unexpectedly
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

GIT_TIMEOUT = 1.0
"""Seconds each git command may take (a huge repo on a slow disk must not stall ``init()``)."""


def collect_metadata(
    cwd: str | os.PathLike[str] | None = None,
    *,
    argv: Sequence[str] | None = None,
    now: _dt.datetime | None = None,
) -> dict[str, Any]:
    """Collect the run's metadata. Never raises.

    Args:
        cwd: the working directory to record and to look for a git repository in (default: the
            process's working directory).
        argv: the command line (default: ``sys.argv``).
        now: the start time (default: the current UTC time).

    Returns:
        A JSON-serialisable dict; see the module docstring for its keys.
    """
    errors: list[str] = []
    meta: dict[str, Any] = {}

    def section(name: str, fn: Callable[[], dict[str, Any] | None]) -> None:
        try:
            meta.update(fn() or {})
        except Exception as e:  # metadata is best effort: record the failure, never raise
            errors.append(f"{name}: {type(e).__name__}: {e}")

    try:
        where = Path(cwd) if cwd is not None else Path.cwd()
    except OSError as e:  # the working directory was deleted under us
        errors.append(f"cwd: {e}")
        where = None
    argv = list(sys.argv if argv is None else argv)
    started = now or _dt.datetime.now(_dt.UTC)

    git_jobs = _start_git(where) if where is not None else None
    section("platform", _platform)
    section("command", lambda: _command(argv, where))
    section("cpu", _cpu_memory)
    section("gpu", _gpu)
    section("user", _user)
    if git_jobs is not None:
        section("git", lambda: _finish_git(git_jobs))
    meta["runstream_version"] = _version()
    meta["started_at"] = started.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if errors:
        meta["errors"] = errors
    return meta


def _platform() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
    }


def _command(argv: list[str], where: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {"program": argv[0] if argv else "", "args": argv[1:]}
    out["command"] = shlex.join([sys.executable, *argv]) if argv else sys.executable
    if where is not None:
        out["cwd"] = str(where)
    return out


def _cpu_memory() -> dict[str, Any]:
    out: dict[str, Any] = {"cpu_count": os.cpu_count()}
    try:
        import psutil  # imported here: `import runstream` stays fast
    except ImportError:
        psutil = None
    if psutil is not None:
        out["cpu_count_physical"] = psutil.cpu_count(logical=False)
        out["memory_total"] = int(psutil.virtual_memory().total)
    elif hasattr(os, "sysconf"):
        out["memory_total"] = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return {k: v for k, v in out.items() if v is not None}


def _user() -> dict[str, Any]:
    import getpass

    try:
        return {"username": getpass.getuser()}
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return {}


def _version() -> str:
    try:
        from . import __version__
    except ImportError:
        return "unknown"
    return str(__version__)


def _nvidia_driver_absent() -> bool:
    """Cheap check that spares importing pynvml on Linux machines without an NVIDIA driver."""
    if not sys.platform.startswith("linux"):
        return False
    return not (os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl"))


def _gpu() -> dict[str, Any]:
    """GPU count and names from NVML; nothing when there is no driver, no GPU or no pynvml."""
    if _nvidia_driver_absent():
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the `pynvml` shim warns that it is deprecated
            import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no GPU to report
        return {}
    try:
        count = int(pynvml.nvmlDeviceGetCount())
        names = []
        for i in range(count):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # shutting NVML down cannot fail in a way that matters here
            pass
    return {"gpu_count": count, "gpu_names": names} if count else {}


# --- git ----------------------------------------------------------------------------------------

_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}


def _start_git(where: Path) -> dict[str, subprocess.Popen[str]] | None:
    """Start the three git queries at once; None when git is not installed or ``where`` is not in a
    git work tree (then no git process is started at all)."""
    from .gitdir import in_work_tree

    if not in_work_tree(where):
        return None
    cmds = {
        "head": ["rev-parse", "--show-toplevel", "HEAD", "--abbrev-ref", "HEAD"],
        "remotes": ["config", "--get-regexp", r"^remote\..*\.url$"],
        "status": ["status", "--porcelain", "--untracked-files=no"],
    }
    env = {**os.environ, **_GIT_ENV}
    jobs: dict[str, subprocess.Popen[str]] = {}
    try:
        for key, args in cmds.items():
            jobs[key] = subprocess.Popen(
                ["git", *args], cwd=where, env=env, text=True, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
    except OSError:  # no git executable, or cwd gone
        _reap(jobs)
        return None
    return jobs


def _reap(jobs: dict[str, subprocess.Popen[str]]) -> None:
    for proc in jobs.values():
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _finish_git(jobs: dict[str, subprocess.Popen[str]]) -> dict[str, Any]:
    out: dict[str, tuple[int, str]] = {}
    try:
        for key, proc in jobs.items():
            stdout, _ = proc.communicate(timeout=GIT_TIMEOUT)
            out[key] = (proc.returncode, stdout)
    finally:
        _reap(jobs)  # after a timeout: kill the rest, never leave zombies
    rc, text = out["head"]
    lines = text.splitlines()
    if not lines or not os.path.isdir(lines[0]):
        return {}  # not inside a work tree
    git: dict[str, Any] = {"root": lines[0], "commit": None, "branch": None}
    if rc == 0 and len(lines) >= 3:
        git["commit"] = lines[1]
        git["branch"] = None if lines[2] == "HEAD" else lines[2]  # "HEAD": detached
    git["remote"] = _pick_remote(out["remotes"][1])
    status_rc, status = out["status"]
    git["dirty"] = bool(status.strip()) if status_rc == 0 else None
    return {"git": git}


def _pick_remote(config_lines: str) -> str | None:
    """``origin``'s URL, else the first remote's; credentials in the URL are removed."""
    urls: dict[str, str] = {}
    for line in config_lines.splitlines():
        key, _, url = line.partition(" ")
        name = key[len("remote."):-len(".url")]
        urls.setdefault(name, url.strip())
    url = urls.get("origin") or next(iter(urls.values()), "")
    return _strip_credentials(url) if url else None


def _strip_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=host))
    return url
