"""``run.watch(model)``: histograms of a PyTorch model's gradients and parameters, through torch hooks.

Every ``log_freq``-th backward pass (gradients) or forward pass (parameters) logs one
:class:`~runstream.Histogram` per parameter tensor, as ``gradients/<name>`` and ``parameters/<name>``
(W&B's keys), with ``commit=False`` so they join the training step's own row.
"""

from __future__ import annotations

from typing import Any

from .errors import UsageError

LOG_KINDS = ("gradients", "parameters", "all", None)


def watch(run: Any, models: Any, *, log: str | None, log_freq: int) -> None:
    if log not in LOG_KINDS:
        raise UsageError(f"watch(log=...) must be one of gradients, parameters, all or None, not {log!r}")
    if not isinstance(log_freq, int) or log_freq < 1:
        raise UsageError(f"watch(log_freq=...) must be a positive integer, not {log_freq!r}")
    try:
        import torch
    except ImportError:
        raise UsageError("watch() records a PyTorch model's gradients and parameters through torch hooks, and "
                         "torch is not installed in this environment (pip install torch); nothing is watched. "
                         "Log other frameworks' values with runstream.log({...: runstream.Histogram(...)})") from None
    from .media import Histogram

    watched: dict[int, list[Any]] = run.__dict__.setdefault("_watched", {})
    for model in models if isinstance(models, (list, tuple)) else [models]:
        if not isinstance(model, torch.nn.Module):
            raise UsageError(f"watch() takes torch.nn.Module objects, not {type(model).__name__}")
        handles: list[Any] = []
        if log in ("parameters", "all"):
            calls = [0]

            def forward_hook(module: Any, args: Any, out: Any, model: Any = model, calls: list[int] = calls) -> None:
                calls[0] += 1
                if calls[0] % log_freq == 0 and not run._finished:
                    run.log({f"parameters/{name}": Histogram(p.detach().float().cpu().numpy())
                             for name, p in model.named_parameters()}, commit=False)

            handles.append(model.register_forward_hook(forward_hook))
        if log in ("gradients", "all"):
            for name, param in model.named_parameters():
                if not param.requires_grad:
                    continue
                seen = [0]

                def grad_hook(grad: Any, name: str = name, seen: list[int] = seen) -> None:
                    seen[0] += 1
                    if seen[0] % log_freq == 0 and not run._finished:
                        run.log({f"gradients/{name}": Histogram(grad.detach().float().cpu().numpy())}, commit=False)

                handles.append(param.register_hook(grad_hook))
        watched.setdefault(id(model), []).extend(handles)


def unwatch(run: Any, models: Any = None) -> None:
    watched: dict[int, list[Any]] = run.__dict__.get("_watched", {})
    if models is None:
        keys = list(watched)
    else:
        keys = [id(m) for m in (models if isinstance(models, (list, tuple)) else [models])]
    for key in keys:
        for handle in watched.pop(key, []):
            handle.remove()
