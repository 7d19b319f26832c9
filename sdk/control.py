"""Stop requests to a live run: answered on the worker thread, acted on in the main thread.

A stop is a control message, not an event: the server sends a NATS request on
``rsctl.run.<entity>.<run_uid>.stop`` and every live writing process of the run (one, or several in shared
mode) subscribes to that subject, so each of them gets it. Each answers with its writer id, then
interrupts its main thread the way Ctrl-C would: the training script sees a ``KeyboardInterrupt``
it may catch to clean up, and the run ends ``killed`` (``run.finish()`` after a stop records
``killed`` whatever the exit code). The server records who asked as a ``stop_requested`` event.

**A stop always stops.** A process that does not end within ``stop_grace`` seconds of the
interrupt (it swallows ``KeyboardInterrupt``, or its main thread is stuck in a C call) is ended by
the SDK itself (:func:`escalate`): it records the ``finish`` event (``killed``, exit code 255,
``stop_escalation`` saying how far it had to go), sends what the spool holds, sends SIGTERM to
its own process, and if that is ignored too, exits hard (``os._exit(255)``) after the same grace.
Each step is one line on stderr.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from .broker.names import control_subject

__all__ = ["StopListener", "escalate", "interrupt_main_thread"]

STOP = "stop"


class StopListener:
    """Answers stop requests for one run on the worker's NATS client.

    Args:
        run: the :class:`~runstream.run.Run`; its ``_stop_requested`` is set on the first stop.
        interrupt: called once, on the first stop (default: :func:`interrupt_main_thread`).
    """

    def __init__(self, run: Any, interrupt: Any = None) -> None:
        self.run = run
        self.subject = control_subject(run.entity, run.uid, STOP)
        self.interrupt = interrupt or interrupt_main_thread
        self._client: Any = None
        self.requests = 0

    def serve(self, client: Any) -> None:
        """Subscribe (once per client; the client re-subscribes after a reconnect) and answer
        every stop request received so far. Never blocks."""
        if self._client is not client:
            client.subscribe(self.subject)
            self._client = client
        for msg in client.take_messages():
            if msg.subject != self.subject:
                continue
            self.requests += 1
            request = _json_object(msg.payload)
            first = getattr(self.run, "_stop_requested", None) is None
            if msg.reply:
                ack = {"ok": True, "writer": self.run.writer, "pid": os.getpid(),
                       "already_stopping": not first}
                client.publish(msg.reply, json.dumps(ack).encode())
            if first:
                self.run._stop_requested = request
                self.interrupt()
                grace = float(getattr(getattr(self.run, "settings", None), "stop_grace", 0) or 0)
                if grace > 0:
                    threading.Thread(target=escalate, args=(self.run, grace), name="runstream-stop",
                                     daemon=True).start()


def escalate(run: Any, grace: float, *, kill: Any = os.kill, exit_: Any = os._exit) -> None:
    """Wait ``grace`` s for ``run`` to finish after a stop; else record ``killed``, send the spool,
    SIGTERM this process, and exit hard after ``grace`` s more (see the module's docstring)."""
    import signal
    import time

    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if run._finished:
            return
        time.sleep(0.05)
    if run._finished:
        return
    _say(f"runstream: run {run.path} was stopped but its process did not end within {grace:g}s of the "
         "interrupt (KeyboardInterrupt caught, or the main thread is blocked): recording it as killed and "
         "sending SIGTERM")
    try:
        runtime = max(0.0, time.time() - run.start_time)
        run._append_event("finish", {"exit_code": 255, "state": "killed", "runtime": runtime,
                                     "stop_escalation": "SIGTERM"})
        run._finished = True
        run.exit_code, run.state = 255, "killed"
        worker = run._worker
        if worker is not None:
            worker.stop(run.settings.finish_timeout)  # the finish event and everything before it
    finally:
        kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace)
    _say(f"runstream: run {run.path}: SIGTERM did not end the process within {grace:g}s either: exiting (255)")
    exit_(255)


def _say(message: str) -> None:
    try:
        os.write(2, (message + "\n").encode())
    except OSError:
        pass


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def interrupt_main_thread() -> None:
    """Raise ``KeyboardInterrupt`` in the main thread, as Ctrl-C does.

    With Python's SIGINT handler in place (the default, or the script's own), a real SIGINT is sent
    to the main thread, which also wakes it from a blocking call such as ``time.sleep``. When
    SIGINT is ignored or left to the OS (e.g. a background job), the exception is set
    asynchronously instead: it is raised at the main thread's next Python instruction.
    """
    import signal

    main = threading.main_thread()
    if main.ident is None or not main.is_alive():
        return
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        if hasattr(signal, "pthread_kill"):
            signal.pthread_kill(main.ident, signal.SIGINT)
        else:  # pragma: no cover - Windows
            import _thread

            _thread.interrupt_main()
        return
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(main.ident), ctypes.py_object(KeyboardInterrupt))
