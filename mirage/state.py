"""The server's state: settings, metrics, the session registry and default reference.

One ``MirageServer`` per aiohttp app, stored under the ``SERVER`` AppKey: nothing
is global, so tests can run several apps in one process. Handlers change it only
through its methods (``admit``, ``add_session``/``remove_session``,
``set_default_reference``); its fields are private, read through properties.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
from aiohttp import web

from mirage.config import Settings
from mirage.engine.backends import Backends, build_backends, probe_voice_timing
from mirage.engine.voicechain import validate_voice
from mirage.metrics import Metrics
from mirage.models import registry
from mirage.models.avatar.reference import default_reference
from mirage.models.base import MirageError
from mirage.models.registry import BuildContext

if TYPE_CHECKING:
    from mirage.webrtc.offer import Offer
    from mirage.webrtc.session import Session

log = logging.getLogger(__name__)


class NoSuchSession(MirageError):
    status = 404


class ServerFull(MirageError):
    """Admission refused: the instance is at capacity (retry another instance)."""

    status = 503
    retry_after_s = 5


class ShuttingDown(ServerFull):
    """Admission refused: the instance is draining before it exits."""

    retry_after_s = 1


class MirageServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self._sessions: dict[str, Session] = {}
        self._admitting = 0  # offers past admission whose session is not made yet
        self._draining = False  # shutting down: no new sessions
        self._reference: np.ndarray = default_reference()
        self._voice_timing: dict[str, float] | None = None
        report = self.backends_report()
        self._log_backends(report)
        self.defaults = {
            "face": self._usable_default("face", settings.face),
            "voice": self._usable_default("voice", settings.voice),
        }
        for kind, track in (("face", "video"), ("voice", "audio")):
            usable = [name for name, why in report[kind].items() if why is None]
            self.metrics.declare_backends(track, {*usable, self.defaults[kind]})

    def _log_backends(self, report: dict[str, dict[str, str | None]]) -> None:
        """One start-up line per backend: available here, or why not (``mirage doctor`` has more)."""
        for kind, reasons in report.items():
            for name, reason in reasons.items():
                if reason is None:
                    log.info("%s backend %s: available", kind, name)
                else:
                    log.info("%s backend %s: unavailable (%s)", kind, name, reason)
        from mirage.models.face import scrfd

        reason = scrfd.unavailable_reason(self.settings.models_dir)
        log.info(
            "face detector scrfd: %s",
            "available"
            if reason is None
            else f"unavailable ({reason}); the shipped detector is used",
        )

    def _usable_default(self, kind: registry.Kind, name: str) -> str:
        """The configured default backend, or passthrough (logged) when it cannot run here."""
        choice = registry.resolve(
            kind, name, self.settings.models_dir, testing=self.settings.test_backends
        )
        if name == "auto":
            log.info(
                "%s backend auto → %s%s",
                kind,
                choice.name,
                "".join(f"\n  passed over {p}" for p in choice.passed),
            )
        elif choice.unavailable is not None:
            log.warning(
                "%s backend %r unavailable (%s); using passthrough", kind, name, choice.unavailable
            )
        return choice.usable()

    async def voice_timing(self) -> dict[str, float]:
        """Block length and algorithmic latency of the default voice backend (cached)."""
        if self._voice_timing is None:
            s, name = self.settings, self.defaults["voice"]
            self._voice_timing = await asyncio.get_running_loop().run_in_executor(
                None, probe_voice_timing, name, BuildContext(s.models_dir), s.voice_preset
            )
        return self._voice_timing

    def backends_report(self) -> dict[str, dict[str, str | None]]:
        """Each user-facing backend → None when usable here, else why not."""
        md = self.settings.models_dir
        return {"face": registry.available("face", md), "voice": registry.available("voice", md)}

    async def make_backends(self, offer: Offer) -> Backends:
        """Make the offer's models off the event loop (they may load weights)."""
        face = offer.face if offer.face not in (None, "auto") else self.defaults["face"]
        voice = offer.voice if offer.voice not in (None, "auto") else self.defaults["voice"]
        # Names and options are checked against the schemas before any thread is used.
        testing = self.settings.test_backends
        face_options = registry.validate("face", face, offer.face_options, testing=testing)
        voice_options = validate_voice(voice, offer.voice_options, testing=testing)
        s, reference = self.settings, self.reference
        # The factories remake a backend that keeps failing (mirage/engine/guard.py).
        return await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: build_backends(
                face,
                voice,
                face_options,
                voice_options,
                reference,
                BuildContext(s.models_dir),
                s.voice_preset,
            ),
        )

    # -- the default portrait -------------------------------------------------------
    @property
    def reference(self) -> np.ndarray:
        """The portrait new sessions start with."""
        return self._reference

    def set_default_reference(self, image: np.ndarray) -> None:
        """Replace the default portrait (already checked for a face by the caller)."""
        self._reference = image

    # -- admission and the session registry -------------------------------------------
    @property
    def draining(self) -> bool:
        """Shutting down: offers get 503, /health says draining."""
        return self._draining

    @property
    def sessions(self) -> Mapping[str, Session]:
        """The live sessions by id (a read-only view)."""
        return MappingProxyType(self._sessions)

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one place while a session is being made: ``ShuttingDown`` when draining,
        ``ServerFull`` at capacity. Offers still being answered count too, or a burst
        of them would all get in; the place is released on leaving the block (by then
        the session is registered, or it failed)."""
        if self._draining:
            raise ShuttingDown("server shutting down; retry on another instance")
        limit = self.settings.max_sessions
        if len(self._sessions) + self._admitting >= limit:
            raise ServerFull(f"at capacity ({limit} sessions); retry later")
        self._admitting += 1
        try:
            yield
        finally:
            self._admitting -= 1

    def session(self, session_id: str) -> Session:
        """The live session ``session_id``; ``NoSuchSession`` (404) otherwise."""
        session = self._sessions.get(session_id)
        if session is None:
            raise NoSuchSession(f"no session {session_id!r} (it ended, or never existed)")
        return session

    def latest_session(self) -> Session:
        """The newest session that is not closing; ``NoSuchSession`` when there is none."""
        live = [s for s in self._sessions.values() if s.closed_reason is None]
        if not live:
            raise NoSuchSession("no session to watch yet")
        return max(live, key=lambda s: s.created)

    def add_session(self, session: Session) -> None:
        self._sessions[session.id] = session
        self.metrics.declare_backends("video", [session.backends.face])
        self.metrics.declare_backends("audio", [session.backends.voice])
        self.metrics.sessions_total.inc()
        self.metrics.sessions_active.set(len(self._sessions))

    def remove_session(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        self.metrics.sessions_active.set(len(self._sessions))

    async def close_all(self) -> None:
        await asyncio.gather(
            *(s.close("server shutting down") for s in list(self._sessions.values()))
        )

    async def shutdown(self, timeout_s: float) -> bool:
        """Stop admitting (offers get 503, /health says draining), then close every
        session (each peer is told: DTLS close, RTCP BYE) within ``timeout_s``.
        False when some did not finish closing in time."""
        self._draining = True
        try:
            await asyncio.wait_for(self.close_all(), timeout_s)
        except asyncio.TimeoutError:
            log.warning("%d sessions still closing after %g s", len(self._sessions), timeout_s)
            return False
        return True


SERVER = web.AppKey("mirage_server", MirageServer)
