"""Errors of the log layer.

::

    BrokerError
     ├── ServerStartError      nats-server from the wheel could not be started
     ├── BrokerUnavailable     no NATS server answers at the URL
     └── RunExistsError        a run id is already taken in its project
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
