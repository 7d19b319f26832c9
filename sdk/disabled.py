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


class DisabledRun:
    mode = "disabled"
    state = "disabled"

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

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        pass

    def __enter__(self) -> DisabledRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass
