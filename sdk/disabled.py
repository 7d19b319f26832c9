"""``mode="disabled"``: a run that accepts every call and records nothing."""

from __future__ import annotations

from typing import Any


class _Dict(dict[str, Any]):
    def update(self, data: Any = None, allow_val_change: bool = False, **kwargs: Any) -> None:  # type: ignore[override]
        super().update(dict(data or {}), **kwargs)

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def setdefaults(self, data: Any) -> None:
        for k, v in dict(data).items():
            self.setdefault(k, v)

    def as_dict(self) -> dict[str, Any]:
        return dict(self)


class DisabledRun:
    """Every Run method and W&B's module-level calls (``runstream.config``, ``save``, ...) work and
    record nothing; ``runstream.run`` is this run until it finishes."""

    mode = "disabled"
    state = "disabled"
    url = None
    tags: tuple[str, ...] = ()
    notes: str | None = None
    group: str | None = None
    job_type: str | None = None

    def __init__(self, entity: str | None, project: str | None, run_id: str | None, name: str | None,
                 config: dict[str, Any]) -> None:
        self.entity = entity or "disabled"
        self.project = project or "uncategorized"
        self.id = run_id or "disabled"
        self.name = name or "disabled"
        self.config = _Dict(config)
        self.summary = _Dict()

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    def log(self, data: Any, step: int | None = None, commit: bool | None = None) -> None:
        pass

    def define_metric(self, *args: Any, **kwargs: Any) -> None:
        pass

    def alert(self, *args: Any, **kwargs: Any) -> None:
        pass

    def save(self, *args: Any, **kwargs: Any) -> list[str]:
        return []

    def log_artifact(self, artifact_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        return artifact_or_path

    def use_artifact(self, *args: Any, **kwargs: Any) -> None:
        return None

    def log_code(self, *args: Any, **kwargs: Any) -> None:
        return None

    def watch(self, *args: Any, **kwargs: Any) -> None:
        pass

    def unwatch(self, *args: Any, **kwargs: Any) -> None:
        pass

    def get_url(self) -> None:
        return None

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        import sys

        mod = sys.modules.get("runstream")
        if mod is not None and mod.__dict__.get("_active_run") is self:
            mod.__dict__["_active_run"] = None

    def __enter__(self) -> DisabledRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()
