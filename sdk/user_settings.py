"""``runstream.Settings``: the options a script passes to ``init(settings=...)``, under W&B's names.

Only what the caller gives is kept; ``init()`` lays it over the environment and ``config.toml``
(:func:`runstream.settings.load_settings`), so ``Settings(console="off")`` changes the console and
nothing else — the data directory, the broker URL and the rest still come from ``RUNSTREAM_*``.

W&B's names are accepted where they mean something here (``silent``, ``x_disable_stats``,
``x_stats_sampling_interval``, ``base_url``, ``root_dir``, ``disable_code``, ...), and so are
runstream's own (:class:`runstream.settings.Settings`). A few of W&B's are accepted and ignored
because they have nothing to act on here (``start_method``: there is no service process). Any
other name is a :class:`~runstream.UsageError` that lists the known ones.
"""

from __future__ import annotations

from typing import Any

from .errors import UsageError
from .settings import Settings as ResolvedSettings

ALIASES: dict[str, str] = {
    "silent": "quiet",
    "x_disable_stats": "disable_stats",
    "_disable_stats": "disable_stats",
    "x_stats_sampling_interval": "stats_interval",
    "_stats_sample_rate_seconds": "stats_interval",
    "base_url": "api_url",
    "root_dir": "run_dir",
    "x_file_stream_timeout_seconds": "finish_timeout",
}
"""W&B's setting name → runstream's."""

NEGATED = {"disable_code": "code_snapshot", "disable_git": "code_snapshot", "x_disable_meta": "code_snapshot"}
"""W&B's ``disable_*`` switches → the runstream setting they turn off."""

INIT_OPTIONS = ("reinit", "save_code", "anonymous", "project", "run_name", "run_notes", "run_tags",
                "run_group", "run_job_type", "run_id", "resume", "fork_from", "resume_from")
"""Settings W&B also takes as ``init()`` arguments: an explicit argument wins."""

IGNORED = ("start_method", "show_info", "show_warnings", "show_errors", "show_emoji", "show_colors",
           "disable_job_creation", "x_disable_service", "program", "program_relpath", "notebook_name",
           "symlink", "sync_tensorboard", "_service_wait", "init_policy")
"""W&B settings with nothing to act on here: accepted, no effect."""

CONSOLE_ALIASES = {"redirect": "wrap", "wrap_raw": "wrap", "wrap_emu": "wrap"}


def _known() -> list[str]:
    return sorted({*ResolvedSettings._fields, *ALIASES, *NEGATED, *INIT_OPTIONS, *IGNORED})


class Settings:
    """Options for ``runstream.init(settings=...)`` (W&B's ``wandb.Settings``).

    Args:
        **given: settings by name, e.g. ``console="off"``, ``x_disable_stats=True``,
            ``reinit="finish_previous"``, ``stats_interval=1``.

    Raises:
        UsageError: a name that is neither runstream's nor one of W&B's accepted here.
    """

    def __init__(self, **given: Any) -> None:
        object.__setattr__(self, "_overrides", {})
        object.__setattr__(self, "_init", {})
        self.update(given)

    def update(self, values: dict[str, Any] | None = None, **more: Any) -> None:
        """Set more options (same names as the constructor)."""
        for name, value in {**(values or {}), **more}.items():
            self._set(name, value)

    def _set(self, name: str, value: Any) -> None:
        overrides: dict[str, Any] = self._overrides
        if name in INIT_OPTIONS:
            self._init[name] = value
        elif name in IGNORED:
            return
        elif name in NEGATED:
            if value is not None:
                overrides[NEGATED[name]] = not bool(value)
        elif name in ALIASES or name in ResolvedSettings._fields:
            field = ALIASES.get(name, name)
            if field == "console" and isinstance(value, str):
                value = CONSOLE_ALIASES.get(value, value)
            overrides[field] = value
        else:
            raise UsageError(f"unknown setting {name!r}; known: {', '.join(_known())}")

    def __setattr__(self, name: str, value: Any) -> None:
        self._set(name, value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name in INIT_OPTIONS:
            return self._init.get(name)
        field = ALIASES.get(name, NEGATED.get(name, name))
        if field not in ResolvedSettings._fields:
            raise AttributeError(f"Settings has no option {name!r}")
        if field in self._overrides:
            value = self._overrides[field]
            return (not value) if name in NEGATED else value
        default = getattr(ResolvedSettings(), field)
        return (not default) if name in NEGATED else default

    def overrides(self) -> dict[str, Any]:
        """What was given, under runstream's setting names (for ``load_settings``)."""
        return dict(self._overrides)

    def init_options(self) -> dict[str, Any]:
        """What was given that ``init()`` also takes as an argument (``reinit``, ``save_code``, ...)."""
        return dict(self._init)

    def __repr__(self) -> str:
        given = {**self._overrides, **self._init}
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in given.items())})"


def overrides_of(settings: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``init(settings=...)`` → (setting overrides, init options). Accepts a :class:`Settings`, a
    dict of names, or a resolved :class:`runstream.settings.Settings` (only the fields that differ
    from the defaults count as given, so its unexpanded default data directory never does)."""
    if settings is None:
        return {}, {}
    if isinstance(settings, Settings):
        return settings.overrides(), settings.init_options()
    if isinstance(settings, ResolvedSettings):
        defaults = ResolvedSettings()
        return {k: v for k, v in settings._asdict().items() if v != getattr(defaults, k)}, {}
    if isinstance(settings, dict):
        s = Settings(**settings)
        return s.overrides(), s.init_options()
    raise UsageError(f"settings must be a runstream.Settings or a dict, not {type(settings).__name__}")
