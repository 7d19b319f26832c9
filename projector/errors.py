"""Errors of the projector.

::

    ProjectorError
     ├── EventRejected     one event cannot be folded (its reason becomes a ``dead_letters`` row)
     ├── StoreError        the DuckDB file cannot be opened or written
     ├── CatchUpTimeout    the projection did not reach the stream's last sequence in time
     ├── StreamSetupError  the broker refuses the streams as configured (no wait can cure it)
     ├── StreamChanged     the event stream is not the one the projection was made from
     └── DeliveryError     an alert could not be delivered to a sink (webhook, email)
"""

from __future__ import annotations


class ProjectorError(Exception):
    """Base of every error raised by :mod:`runstream.projector`."""


class EventRejected(ProjectorError):
    """An event that cannot be folded; the message is the dead letter's ``reason``."""


class StoreError(ProjectorError):
    """The projection's DuckDB file could not be opened, migrated or written."""


class CatchUpTimeout(ProjectorError):
    """Projection stopped short of the stream's last sequence before the timeout."""

    def __init__(self, projected: int, target: int, timeout: float) -> None:
        super().__init__(
            f"projected up to stream seq {projected} of {target} within {timeout:.1f}s; "
            "the stream may be very large or NATS slow: retry with a longer timeout"
        )
        self.projected = projected
        self.target = target


class StreamSetupError(ProjectorError):
    """The broker refuses the log's streams as configured (e.g. 3 replicas on a single server):
    waiting cannot cure it, so the server stops with this message."""


class StreamChanged(ProjectorError):
    """The event stream was deleted and recreated (another creation time), or is behind the
    checkpoint: projecting from the checkpoint would skip its events, so the projector pauses."""


class DeliveryError(ProjectorError):
    """A sink refused an alert or could not be reached; the message is recorded in
    ``alert_deliveries.error``."""
