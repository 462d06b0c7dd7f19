"""A circuit breaker around one model: calls with a deadline, a fresh model after
repeated failures.

Every call runs on the guard's own model thread while the caller (a track's
worker) waits at most ``timeout_s``; the caller falls back (pass-through, last
frame, silence) whenever ``call`` raises. A Python thread cannot be killed, so a
call past its deadline is abandoned: its thread is a daemon that only ever
touches the model it was handed, and its result goes nowhere. While it is stuck
the guard fails fast (``ModelBusy``) and charges one more failure per further
``timeout_s``; after ``restart_after`` consecutive failures (raises or hangs)
the model is remade from its factory on a fresh thread, and the old one is
closed by its own thread once its last call ends. The restart threshold doubles
while restarts do not help (a backend that keeps failing must not reload its
weights every few frames) and resets on the first success.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from mirage.models.base import MirageError
from mirage.models.cuda import release_cached_memory

log = logging.getLogger(__name__)


class Closeable(Protocol):
    """What the guard needs of a model: a way to release it (backends' base classes
    declare a no-op one)."""

    def close(self) -> None: ...


M = TypeVar("M", bound=Closeable)
R = TypeVar("R")

MAX_BACKOFF = 64  # the restart threshold grows to at most this many times restart_after
#: A call is hung when it takes this many times the model's usual call (or timeout_s,
#: whichever is longer): a LivePortrait frame on a CPU takes seconds and is not a hang.
SLOW_FACTOR = 4.0


class ModelUnavailable(MirageError):
    """The model cannot take this call now; the caller falls back."""

    status = 503
    retry_after_s = 2


class ModelTimeout(ModelUnavailable):
    """A call ran past its deadline (it is left running and abandoned)."""


class ModelBusy(ModelUnavailable):
    """An earlier call or a restart is still running, or the guard is closed."""


class _ModelThread:
    """One daemon thread running one job at a time; ``retire`` ends it after its
    current job, then runs ``then`` (closing the model it served) on the same thread."""

    def __init__(self, name: str) -> None:
        self._cond = threading.Condition()
        self._job: tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None = None
        self._retired = False
        self._then: Callable[[], None] | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def submit(self, fn: Callable[[], R]) -> concurrent.futures.Future[R]:
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        with self._cond:
            if self._retired:
                future.set_exception(ModelBusy("the model is closed"))
                return future
            self._job = (fn, future)
            self._cond.notify()
        return future

    def retire(self, then: Callable[[], None] | None = None) -> None:
        with self._cond:
            self._retired = True
            self._then = then
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._retired:
                    self._cond.wait()
                job, self._job = self._job, None
                then = self._then if job is None else None
            if job is None:
                if then is not None:
                    try:
                        then()
                    except Exception:
                        log.exception("closing a model failed")
                return
            fn, future = job
            if future.done() or not future.set_running_or_notify_cancel():
                continue  # failed by close() before it started
            try:
                result = fn()
            except BaseException as exc:
                # The waiter may have given up and failed the future already (close).
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    future.set_exception(exc)
            else:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    future.set_result(result)


def close_model(model: Closeable) -> None:
    """The backend's ``close()``, then the CUDA cache back to the driver."""
    model.close()
    release_cached_memory()


def _close_when_done(future: concurrent.futures.Future[Any]) -> None:
    """Close the model a restart nobody waits for any more returns (on its thread)."""

    def done(f: concurrent.futures.Future[Any]) -> None:
        if not f.cancelled() and f.exception() is None:
            try:
                close_model(f.result())
            except Exception:
                log.exception("closing a model failed")

    future.add_done_callback(done)


class ModelGuard(Generic[M]):
    """Owns one model; ``call(fn)`` runs ``fn(model)`` under the contract above.

    Calls come from one thread at a time (the track's worker; set-up calls before
    it starts); ``close`` may come from any thread and never blocks.
    """

    def __init__(
        self,
        model: M,
        remake: Callable[[], M] | None,
        *,
        name: str,
        timeout_s: float,
        restart_after: int,
        setup_timeout_s: float = 60.0,
        on_timeout: Callable[[], None] | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.restart_after = max(1, restart_after)
        self.setup_timeout_s = max(setup_timeout_s, timeout_s)
        self._model: M | None = model
        self._remake = remake
        self._on_timeout = on_timeout
        self._on_restart = on_restart
        self._lock = threading.Lock()
        self._thread = _ModelThread(f"mirage-model-{name}")
        self._pending: concurrent.futures.Future[Any] | None = None  # abandoned call/restart
        self._pending_is_restart = False
        self._pending_deadline = 0.0  # the next time the stuck call is charged a failure
        self._waiting: concurrent.futures.Future[Any] | None = None
        self._threshold = self.restart_after
        self._closed = False
        self.failures = 0  # consecutive
        self.timeouts = 0
        self.restarts = 0
        self.restart_errors = 0
        # A model's first call warms it up (CUDA context, autotuning, torch.compile) and
        # gets the set-up deadline; later calls are judged against the usual call.
        self._warm = False
        self._usual_s: float | None = None

    @property
    def model(self) -> M | None:
        """The current model (None while a restart is running or after one failed)."""
        return self._model

    @property
    def closed(self) -> bool:
        return self._closed

    def call(self, fn: Callable[[M], R], *, setup: bool = False) -> R:
        """``fn(model)`` within the deadline. The model's own exception comes back
        as is; ``setup`` calls (set_reference, reset) get the longer set-up deadline
        and their exceptions (e.g. ``NoFaceError``) are the caller's, not failures."""
        with self._lock:
            if self._closed:
                raise ModelBusy(f"{self.name} model is closed")
            self._settle()
            model = self._model
            if self._pending is not None:  # fail fast; the stuck call is charged in _settle
                what = "restart" if self._pending_is_restart else "an earlier call"
                raise ModelBusy(f"{self.name} model busy ({what} still running)")
            if model is None:  # the last restart failed: count towards the next one
                error = ModelBusy(f"{self.name} model unavailable (its restart failed)")
                raise (error if setup else self._fail(error))
            timeout = self._deadline(setup)
            future = self._thread.submit(lambda: fn(model))
            self._waiting = future
            started = time.monotonic()
            try:
                result = future.result(timeout)
            except concurrent.futures.TimeoutError:
                self._abandon(future, timeout)
                raise self._fail(
                    ModelTimeout(f"{self.name} model call took longer than {timeout:g} s")
                ) from None
            except Exception as exc:
                if setup or isinstance(exc, ModelBusy):
                    raise
                raise self._fail(exc) from None
            finally:
                self._waiting = None
            if not setup:
                self._learn(time.monotonic() - started)
            self.failures = 0
            self._threshold = self.restart_after
            return result

    def _deadline(self, setup: bool) -> float:
        if setup or not self._warm:
            return self.setup_timeout_s
        usual = 0.0 if self._usual_s is None else self._usual_s
        return max(self.timeout_s, SLOW_FACTOR * usual)

    def _learn(self, took: float) -> None:
        """Track the usual call time (an average that forgets in about ten calls)."""
        if not self._warm:  # the warm-up overstates the usual call: a safe first guess
            self._warm = True
            self._usual_s = took
            return
        self._usual_s = took if self._usual_s is None else 0.9 * self._usual_s + 0.1 * took

    def close(self) -> None:
        """Stop taking calls, wake a caller waiting on the model, and close the model on
        its own thread once its current call (if any) ends. Idempotent, non-blocking."""
        with contextlib.suppress(Exception):
            waiting = self._waiting
            if waiting is not None:  # a worker blocked on the model: let it go now
                waiting.set_exception(ModelBusy(f"{self.name} model is closed"))
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._pending is not None and self._pending_is_restart:
                _close_when_done(self._pending)
            self._retire_current()

    def wait_closed(self, timeout: float) -> bool:
        """Block (off the event loop) until the closed model's thread has released it,
        at most ``timeout``; False when it is still busy (a hung call keeps it).

        Native libraries (MediaPipe, CUDA) must not be torn down by interpreter exit
        while a daemon thread is still inside them: that aborts the process."""
        thread = self._thread.thread
        if thread is threading.current_thread():
            return False
        # A slow model's last call (seconds a frame for LivePortrait on a CPU) is not
        # a hang: give it its usual time, never more than the set-up deadline.
        usual = 0.0 if self._usual_s is None else SLOW_FACTOR * self._usual_s
        thread.join(min(max(timeout, usual), max(timeout, self.setup_timeout_s)))
        return not thread.is_alive()

    # -- internals (under the lock) -----------------------------------------------------
    def _abandon(self, future: concurrent.futures.Future[Any], timeout: float) -> None:
        self.timeouts += 1
        self._pending = future
        self._pending_is_restart = False
        self._pending_deadline = time.monotonic() + timeout
        if self._on_timeout is not None:
            self._on_timeout()
        log.warning("%s model call overran %g s; abandoned, falling back", self.name, timeout)

    def _settle(self) -> None:
        """Take the outcome of an abandoned call or a restart that has ended since."""
        pending = self._pending
        if pending is None:
            return
        if not pending.done():
            if time.monotonic() >= self._pending_deadline:
                # Still stuck: one more failure per window (a hung restart is given up).
                if self._pending_is_restart:
                    self._give_up_restart()
                    return
                self._pending_deadline += self.timeout_s
                self._fail(ModelTimeout(f"{self.name} model still stuck"))
            return
        self._pending = None
        if not self._pending_is_restart:
            return  # its result is discarded; the model is free again
        self._pending_is_restart = False
        try:
            self._model = pending.result()
        except Exception as exc:
            self.restart_errors += 1
            log.error("%s model restart failed: %s", self.name, exc)
            return
        self.restarts += 1
        self._warm = False  # the new model warms up again, and may be faster or slower
        self._usual_s = None
        if self._on_restart is not None:
            self._on_restart()
        log.warning("%s model restarted (%d so far)", self.name, self.restarts)

    def _give_up_restart(self) -> None:
        self.restart_errors += 1
        log.error("%s model restart overran %g s; abandoned", self.name, self.setup_timeout_s)
        if self._pending is not None:
            _close_when_done(self._pending)
        self._thread.retire()
        self._thread = _ModelThread(f"mirage-model-{self.name}")
        self._pending = None
        self._pending_is_restart = False

    def _fail(self, error: Exception) -> Exception:
        """Count a failure; restart the model when there were enough in a row."""
        self.failures += 1
        if self.failures >= self._threshold and self._remake is not None:
            self._start_restart()
        return error

    def _start_restart(self) -> None:
        if self._pending is not None and self._pending_is_restart:
            return
        remake = self._remake
        assert remake is not None
        self.failures = 0
        self._threshold = min(self._threshold * 2, self.restart_after * MAX_BACKOFF)
        self._retire_current()
        self._thread = _ModelThread(f"mirage-model-{self.name}")
        self._pending = self._thread.submit(remake)
        self._pending_is_restart = True
        self._pending_deadline = time.monotonic() + self.setup_timeout_s
        log.warning("%s model failing; restarting it", self.name)

    def _retire_current(self) -> None:
        """Hand the current model to its thread to close after its last call; forget it."""
        box = [] if self._model is None else [self._model]
        self._model = None

        def close_it() -> None:
            while box:
                close_model(box.pop())

        self._thread.retire(close_it)
