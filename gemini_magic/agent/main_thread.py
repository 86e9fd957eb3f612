"""Agent code asked for on a background thread, run on the kernel's main thread.

The chat widget's answer loop runs on a request thread of its own. Agent code run there
would race the cells: `capture_output` swaps the process-wide sys.stdout and the shell's
display publisher, so a cell running meanwhile would lose its output into the agent's,
or the other way round; and Kernel ▸ Interrupt could not stop it (Python delivers
signals to the main thread only). So a `MainThreadRunner` posts the job to the thread
that runs the cells and waits for it:

    runner = MainThreadRunner(shell)
    run = runner(lambda: run_code(shell, code, run))   # on the request thread: blocks
    runner.run_pending()                               # on the main thread: runs what waits

What ipykernel (6 and 7) does, read in its source (kernelbase.py, kernelapp.py):

- `Kernel.start()` sets `kernel.io_loop = IOLoop.current()` and `IPKernelApp.start()`
  then runs that loop on the thread that started the app: the main thread. Execute
  requests (cells) and comm messages (widget clicks) of the main shell are handled on
  it; the control channel (interrupt, shutdown) and, in ipykernel 7, the shell channel's
  socket have threads of their own. A callback added with `io_loop.add_callback` (safe
  from any thread) therefore runs between cells, not during one; the exception is a cell
  that awaits at the top level, which lets the loop turn (and such a job in) meanwhile.
- `IPKernelApp.init_signal` ignores SIGINT (SIG_IGN); `Kernel.pre_handler_hook` installs
  `signal.default_int_handler` only while a shell message is handled, and an interrupt
  request (or the kernel manager's own signal) sends the process SIGINT. A job run from
  a loop callback is outside any handler, so the runner installs default_int_handler
  for the job's time and puts the previous handler back: Kernel ▸ Interrupt then raises
  KeyboardInterrupt in the job, which is handed back to the waiting thread.
- With `trio_loop` the tornado loop runs on a thread of its own ("TornadoBackground"):
  the job then runs there, and cannot be interrupted (a signal handler can only be set
  on the main thread).

Without a kernel (IPython in a terminal, tests), with a loop that is not running, or
when the caller is the main thread already, the job runs where it is called.

The main thread can be busy waiting for the very answer that needs it (a cell calling
`chat.wait()`): such a wait calls `run_pending()` as it waits, so the job runs there,
inside that cell, instead of waiting for a loop that cannot turn.

A job that waited behind a running cell is held GRACE seconds more once the loop is
free: a Stop clicked meanwhile is a comm message queued behind the cell too, and the
job, posted earlier, would otherwise run before the click is read. Stop cancels it.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any


class _Job:
    def __init__(self, job: Callable[[], Any]):
        self.job = job
        self.value: Any = None
        self.error: BaseException | None = None
        self.started = False
        self.done = threading.Event()
        self.posted = time.monotonic()
        self.graced = False

    def run(self) -> None:
        on_main = threading.current_thread() is threading.main_thread()
        try:
            previous = signal.signal(signal.SIGINT, signal.default_int_handler) if on_main else None
            try:
                self.started = True
                self.value = self.job()
            except BaseException as exc:  # noqa: BLE001  (KeyboardInterrupt too: the caller raises it)
                self.error = exc
            finally:
                if previous is not None:
                    signal.signal(signal.SIGINT, previous)
        finally:
            self.done.set()

    def cancel(self) -> None:
        self.error = KeyboardInterrupt("Stopped before it ran.")
        self.done.set()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class MainThreadRunner:
    """`runner(job)`: `job()` run on the kernel's main thread, its value returned (or its
    exception, KeyboardInterrupt included, raised) on the calling thread. See the module's
    docstring. `on_delay()`, if set, is called when the job has not started within
    DELAY seconds (a cell is running: the job waits for it)."""

    DELAY = 0.5
    GRACE = 0.25  # after waiting behind a cell: time for clicks made meanwhile (Stop) to be handled first

    def __init__(self, shell, on_delay: Callable[[], None] | None = None):
        self.shell = shell
        self.on_delay = on_delay
        self._lock = threading.Lock()
        self._pending: list[_Job] = []

    def loop(self):
        """The kernel's main loop if it is running, else None (jobs then run in place)."""
        loop = getattr(getattr(self.shell, "kernel", None), "io_loop", None)
        running = getattr(getattr(loop, "asyncio_loop", None), "is_running", None)
        return loop if running is not None and running() else None

    def needs_this_thread(self) -> bool:
        """Whether jobs are posted to the thread calling this (the kernel's main thread):
        a wait there must run them (`run_pending`), or they never run."""
        return threading.current_thread() is threading.main_thread() and self.loop() is not None

    def __call__(self, job: Callable[[], Any]) -> Any:
        loop = self.loop()
        if loop is None or threading.current_thread() is threading.main_thread():
            return job()
        task = _Job(job)
        with self._lock:
            self._pending.append(task)
        loop.add_callback(self._from_loop, loop)
        if not task.done.wait(self.DELAY) and not task.started and self.on_delay is not None:
            self.on_delay()
        task.done.wait()
        return task.outcome()

    def run_pending(self) -> int:
        """Run the jobs waiting for the main thread, here and now; how many ran."""
        ran = 0
        while True:
            with self._lock:
                if not self._pending:
                    return ran
                task = self._pending.pop(0)
            task.run()
            ran += 1

    def cancel(self) -> None:
        """Jobs not started yet never start: their callers get KeyboardInterrupt (Stop)."""
        with self._lock:
            tasks, self._pending = self._pending, []
        for task in tasks:
            task.cancel()

    def _from_loop(self, loop) -> None:
        try:
            with self._lock:
                waited = [t for t in self._pending if not t.graced and time.monotonic() - t.posted > self.DELAY]
                for task in waited:
                    task.graced = True
            if waited:
                # It waited behind a cell, and the user may have clicked Stop meanwhile: that
                # click is a message the loop has not read yet. Let it go first.
                loop.call_later(self.GRACE, self._from_loop, loop)
                return
            self.run_pending()
        except KeyboardInterrupt:
            # A Ctrl-C that came just after a job ended, before its handler was put back:
            # it must not reach the loop (as ipykernel's own eventloop callbacks do).
            pass
