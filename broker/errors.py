"""Errors of the log layer.

::

    BrokerError
     ├── ServerStartError      nats-server from the wheel could not be started
     ├── BrokerUnavailable     no NATS server answers at the URL
     └── RunExistsError        a run id is already taken in its project
          ├── RunDeletedError  ... by a deleted run: deleted ids are never reused
          └── RunMovedError    ... by a run that moved to another project (reserved for it)
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base of every error raised by :mod:`runstream.broker`."""


class ServerStartError(BrokerError):
    pass


class BrokerUnavailable(BrokerError):
    pass


class RunExistsError(BrokerError):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"run {path!r} already exists: run ids are unique within a project. "
            "Pass a different id, or leave id unset to get a fresh one."
        )
        self.path = path


class RunDeletedError(RunExistsError):
    def __init__(self, path: str) -> None:
        BrokerError.__init__(
            self,
            f"run {path!r} was deleted, and the id of a deleted run can never be used again in its "
            "project. Pass a different id, or leave id unset to get a fresh one.",
        )
        self.path = path


class RunMovedError(RunExistsError):
    def __init__(self, path: str, to: str | None) -> None:
        BrokerError.__init__(
            self,
            f"run id {path!r} belonged to a run that was moved to {to or 'another project'!r}; the id "
            "stays reserved for that run in its old project. Pass a different id, or leave id unset.",
        )
        self.path = path
        self.to = to
