"""Errors raised by the runstream SDK.

::

    RunstreamError
     ├── UsageError          the call itself is wrong (bad id, finished run, bad argument)
     │    └── RunNotFoundError   resume="must", fork_from or resume_from name a run that does not exist
     ├── RunExistsError      (from runstream.broker) a run id is already taken in its project
     │    ├── RunDeletedError   ... by a deleted run (never reusable)
     │    └── RunMovedError     ... by a run that moved away (reserved for it)
     ├── StackError          the local stack could not be started or reached
     ├── QueryError          a SQL query was refused or failed on the server
     └── SyncError           a spool could not be sent
"""

from __future__ import annotations


class RunstreamError(Exception):
    """Base of the SDK's own errors."""


class UsageError(RunstreamError, ValueError):
    pass


class RunNotFoundError(UsageError):
    """The run to resume, fork or rewind does not exist."""


class StackError(RunstreamError):
    pass


class QueryError(RunstreamError):
    pass


class SyncError(RunstreamError):
    pass
