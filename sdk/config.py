"""``run.config`` and ``run.summary``: dict-like views that publish their changes as events."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from .errors import UsageError


def _as_dict(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if isinstance(data, argparse.Namespace):
        return dict(vars(data))
    if isinstance(data, Mapping):
        return dict(data)
    flags = getattr(data, "flag_values_dict", None)
    if callable(flags):  # absl's FLAGS (and anything shaped like it)
        return dict(flags())
    if isinstance(data, (str, os.PathLike)):
        return _from_yaml(Path(data))
    raise TypeError(f"config must be a dict, an argparse.Namespace, absl FLAGS or a YAML file path, "
                    f"not {type(data).__name__}")


def _from_yaml(path: Path) -> dict[str, Any]:
    """A YAML file of hyperparameters: ``key: value``, or W&B's ``key: {value: v, desc: ...}``."""
    try:
        import yaml
    except ImportError:
        raise UsageError(f"config={str(path)!r} is a YAML file; reading it needs PyYAML: pip install pyyaml") from None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"config file {str(path)!r} cannot be read: {e}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"config file {str(path)!r} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {str(path)!r} must hold a mapping of keys to values")
    out: dict[str, Any] = {}
    for k, v in data.items():
        if k == "wandb_version":
            continue  # W&B's files carry it; it is no hyperparameter
        if isinstance(v, dict) and "value" in v and set(v) <= {"value", "desc"}:
            v = v["value"]
        out[str(k)] = v
    return out


def select_keys(cfg: dict[str, Any], include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """W&B's ``config_include_keys`` / ``config_exclude_keys`` (not both)."""
    if include is not None and exclude is not None:
        raise UsageError("give config_include_keys or config_exclude_keys, not both")
    for name, keys in (("config_include_keys", include), ("config_exclude_keys", exclude)):
        if keys is not None and (isinstance(keys, str) or not all(isinstance(k, str) for k in keys)):
            raise UsageError(f"{name} must be a list of key names")
    if include is not None:
        return {k: v for k, v in cfg.items() if k in set(include)}
    if exclude is not None:
        return {k: v for k, v in cfg.items() if k not in set(exclude)}
    return cfg


class Config(MutableMapping[str, Any]):
    """Hyperparameters of a run. New keys may be added at any time; changing an existing key's value
    raises unless ``allow_val_change=True`` (as in W&B). Attribute access works: ``run.config.lr``."""

    def __init__(self, initial: dict[str, Any], publish: Callable[[dict[str, Any]], None],
                 allow_val_change: bool = False) -> None:
        object.__setattr__(self, "_data", dict(initial))
        object.__setattr__(self, "_publish", publish)
        object.__setattr__(self, "_allow_val_change", allow_val_change)
        """``init(allow_val_change=True)``: every later change of a value is allowed."""

    def update(self, data: Any = None, allow_val_change: bool | None = None, **kwargs: Any) -> None:  # type: ignore[override]
        changes = {**_as_dict(data), **kwargs}
        allowed = self._allow_val_change if allow_val_change is None else allow_val_change
        for k, v in changes.items():
            if not isinstance(k, str):
                raise UsageError(f"config keys must be strings, not {k!r}")
            if not allowed and k in self._data and self._data[k] != v:
                raise UsageError(
                    f"config key {k!r} already has the value {self._data[k]!r}; refusing to change it to "
                    f"{v!r}. Pass allow_val_change=True (run.config.update({{...}}, allow_val_change=True)) "
                    "to change it on purpose."
                )
        fresh = {k: v for k, v in changes.items() if k not in self._data or self._data[k] != v}
        if fresh:
            self._data.update(fresh)
            self._publish(fresh)

    def setdefaults(self, data: Mapping[str, Any]) -> None:
        self.update({k: v for k, v in data.items() if k not in self._data})

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __delitem__(self, key: str) -> None:
        raise UsageError("config keys cannot be deleted")

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def as_dict(self) -> dict[str, Any]:
        return dict(self._data)

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


class Summary(MutableMapping[str, Any]):
    """The run's summary: the last value logged for each key unless set explicitly.

    Reading it reflects every ``log()`` that returned (it waits for the background thread to catch
    up); assigning publishes a ``summary`` event, which wins until the key is logged again.

    Args:
        sync: wait until the mirror reflects every row spooled so far.
        mirror: object with ``last`` (key → value) and ``count`` (key → rows seen).
        publish: ``(set, delete)`` → publish a summary event.
    """

    def __init__(self, sync: Callable[[], None], mirror: Any,
                 publish: Callable[[dict[str, Any], list[str]], None]) -> None:
        self._sync = sync
        self._mirror = mirror
        self._publish = publish
        self._explicit: dict[str, tuple[int, Any]] = {}
        self._deleted: dict[str, int] = {}

    def _view(self) -> dict[str, Any]:
        self._sync()
        counts = self._mirror.count
        merged = {k: v for k, v in self._mirror.last.items()
                  if k not in self._deleted or counts.get(k, 0) > self._deleted[k]}
        for k, (seen, v) in self._explicit.items():
            if counts.get(k, 0) <= seen:
                merged[k] = v
        return merged

    def update(self, data: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        changes = {**_as_dict(data), **kwargs}
        self._sync()
        for k, v in changes.items():
            self._explicit[k] = (self._mirror.count.get(k, 0), v)
            self._deleted.pop(k, None)
        self._publish(changes, [])

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __getitem__(self, key: str) -> Any:
        return self._view()[key]

    def __delitem__(self, key: str) -> None:
        if key not in self._view():
            raise KeyError(key)
        self._explicit.pop(key, None)
        self._deleted[key] = self._mirror.count.get(key, 0)
        self._publish({}, [key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._view())

    def __len__(self) -> int:
        return len(self._view())

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._view()[key]
        except KeyError:
            raise AttributeError(f"summary has no key {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("_"):
            object.__setattr__(self, key, value)
        else:
            self.update({key: value})

    def __delattr__(self, key: str) -> None:
        if key.startswith("_"):
            object.__delattr__(self, key)
        else:
            del self[key]

    def as_dict(self) -> dict[str, Any]:
        return self._view()

    def __repr__(self) -> str:
        return f"Summary({self._view()!r})"


def as_config(data: Any) -> dict[str, Any]:
    return _as_dict(data)

