"""Fault injection: models that raise, hang, or fail to come back.

The guard alone first (fast, no WebRTC), then one real loopback session whose face
and voice backends both hang: media must keep flowing, the hang is counted, the
backends are remade, and nothing the hung calls return ever reaches the peer.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np
import pytest

from mirage.client.probe import Probe, draw_id, read_id
from mirage.engine.guard import ModelBusy, ModelGuard, ModelTimeout
from mirage.engine.supervised import SupervisedAnimator, SupervisedConverter
from mirage.models.base import BadInput, NoFaceError
from mirage.models.cuda import release_cached_memory
from mirage.models.testing import HangAnimator
from mirage.models.voice.passthrough import PassthroughConverter
from mirage.state import SERVER
from tests.server_fixtures import StartServer, base_url
from tests.test_loopback import metric, mirage_threads


class Model:
    """Returns its serial; raises while ``fail`` is set; blocks while ``hold`` is clear."""

    def __init__(self, serial: int = 1) -> None:
        self.serial = serial
        self.fail = False
        self.hold = threading.Event()
        self.hold.set()
        self.closed = False
        self.closed_by: str | None = None

    def run(self) -> int:
        self.hold.wait()
        if self.fail:
            raise RuntimeError(f"model {self.serial} failed")
        return self.serial

    def close(self) -> None:
        self.closed = True
        self.closed_by = threading.current_thread().name


MakeGuard = Callable[..., tuple[ModelGuard[Model], list[Model]]]


@pytest.fixture
def make_guard() -> Iterator[MakeGuard]:
    """A guard over ``Model``s (``remake_s``: how long a remake takes); at the end every
    guard is closed and every model let go, so no model thread outlives its test."""
    opened: list[tuple[ModelGuard[Model], list[Model]]] = []

    def make(remake_s: float = 0.0, **kw: Any) -> tuple[ModelGuard[Model], list[Model]]:
        made: list[Model] = []

        def remake() -> Model:
            if made:
                time.sleep(remake_s)  # a real backend loads weights
            model = Model(len(made) + 1)
            made.append(model)
            return model

        first = remake()
        # A generous deadline unless a test is about hangs: a loaded machine is slow.
        options: dict[str, Any] = {"name": "t", "timeout_s": 5.0, "restart_after": 3, **kw}
        guard = ModelGuard(first, remake, **options)
        opened.append((guard, made))
        return guard, made

    yield make
    for guard, made in opened:
        guard.close()
        for model in made:
            model.hold.set()


def wait_for_model(guard: ModelGuard[Model], serial: int, timeout: float = 3.0) -> int:
    """Call until the guard answers with model ``serial`` (a restart has landed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = guard.call(Model.run)
        except (ModelBusy, ModelTimeout, RuntimeError):
            time.sleep(0.01)
            continue
        if got == serial:
            return got
    raise AssertionError(f"model {serial} never answered")


def test_raises_are_counted_and_the_model_is_remade_after_n_in_a_row(make_guard: MakeGuard) -> None:
    guard, made = make_guard(remake_s=0.2)
    made[0].fail = True
    for _ in range(2):
        with pytest.raises(RuntimeError, match="model 1 failed"):
            guard.call(Model.run)
    made[0].fail = False
    assert guard.call(Model.run) == 1 and guard.failures == 0  # a success resets the count
    made[0].fail = True
    for _ in range(3):
        with pytest.raises(RuntimeError):
            guard.call(Model.run)
    with pytest.raises(ModelBusy):  # while the new model is made: fail fast
        guard.call(Model.run)
    assert wait_for_model(guard, 2) == 2
    assert guard.restarts == 1 and len(made) == 2
    assert made[0].closed and made[0].closed_by is not None
    assert made[0].closed_by.startswith("mirage-model-"), "closed off its own thread"


def test_a_hung_call_is_abandoned_and_what_it_returns_is_dropped(make_guard: MakeGuard) -> None:
    guard, made = make_guard(timeout_s=0.15, restart_after=5)
    assert guard.call(Model.run) == 1  # warm: the first call has the set-up deadline
    made[0].hold.clear()
    t0 = time.monotonic()
    with pytest.raises(ModelTimeout, match=r"longer than 0\.15 s"):
        guard.call(Model.run)
    assert 0.14 < time.monotonic() - t0 < 1.0
    assert guard.timeouts == 1
    t0 = time.monotonic()
    with pytest.raises(ModelBusy, match="earlier call"):
        guard.call(Model.run)
    assert time.monotonic() - t0 < 0.05, "a stuck model must fail fast, not wait again"
    made[0].hold.set()  # the hang ends before the restart threshold: same model again
    guard.timeout_s = 5.0
    time.sleep(0.05)
    assert guard.call(Model.run) == 1
    assert guard.restarts == 0 and len(made) == 1


def test_a_model_stuck_for_n_windows_is_remade_and_closed_when_it_returns(
    make_guard: MakeGuard,
) -> None:
    guard, made = make_guard(timeout_s=0.1, restart_after=3)
    assert guard.call(Model.run) == 1
    made[0].hold.clear()
    t0 = time.monotonic()
    with pytest.raises(ModelTimeout):
        guard.call(Model.run)
    assert wait_for_model(guard, 2) == 2
    took = time.monotonic() - t0
    # Charged once per 0.1 s window: 3 windows, plus scheduling slack on a busy machine.
    assert 0.28 < took < 2.0, f"restart after {took:.2f} s"
    assert guard.restarts == 1
    assert not made[0].closed, "closed while its call was still running"
    made[0].hold.set()
    for _ in range(100):
        if made[0].closed:
            break
        time.sleep(0.01)
    assert made[0].closed, "the abandoned model was never closed"


def test_restarts_back_off_while_they_do_not_help(make_guard: MakeGuard) -> None:
    guard, made = make_guard(restart_after=2)

    def failing_remake() -> Model:
        model = Model(len(made) + 1)
        model.fail = True
        made.append(model)
        return model

    guard._remake = failing_remake
    made[0].fail = True
    failures = 0
    deadline = time.monotonic() + 5
    while guard.restarts < 3 and time.monotonic() < deadline:
        try:
            guard.call(Model.run)
        except RuntimeError:
            failures += 1
        except ModelBusy:
            time.sleep(0.002)
    assert guard.restarts == 3
    # Thresholds 2, 4, 8 failures (a fixed threshold would have needed 6), and the call
    # on which the third new model arrived, which failed too.
    assert failures == 2 + 4 + 8 + 1


def test_a_failed_restart_is_retried(make_guard: MakeGuard) -> None:
    guard, made = make_guard(restart_after=2)
    attempts = []

    def flaky_remake() -> Model:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("weights gone")
        model = Model(len(made) + 1)
        made.append(model)
        return model

    guard._remake = flaky_remake
    made[0].fail = True
    deadline = time.monotonic() + 5
    got = None
    while got is None and time.monotonic() < deadline:
        try:
            got = guard.call(Model.run)
        except (ModelBusy, RuntimeError):
            time.sleep(0.005)
    assert got == made[-1].serial
    assert guard.restart_errors == 1 and guard.restarts == 1 and len(attempts) == 2


def test_setup_calls_keep_their_errors_and_are_not_failures(make_guard: MakeGuard) -> None:
    guard, _ = make_guard(restart_after=1)

    def no_face(model: Model) -> None:
        raise NoFaceError("no face in this portrait")

    with pytest.raises(NoFaceError):
        guard.call(no_face, setup=True)
    assert guard.failures == 0 and guard.restarts == 0


class SlowModel(Model):
    """Takes ``first_s`` on its first call (a warm-up) and ``each_s`` on every later one."""

    def __init__(self, first_s: float, each_s: float) -> None:
        super().__init__()
        self.first_s, self.each_s, self.calls = first_s, each_s, 0

    def run(self) -> int:
        self.calls += 1
        time.sleep(self.first_s if self.calls == 1 else self.each_s)
        return super().run()


def test_a_slow_steady_model_is_not_a_hang_but_a_stall_beyond_its_usual_time_is() -> None:
    """LivePortrait on a CPU takes seconds a frame: judged against its own usual call
    (× SLOW_FACTOR) and given the set-up deadline to warm up, it is never abandoned;
    a call far beyond its usual time still is."""
    model = SlowModel(first_s=0.3, each_s=0.06)
    guard = ModelGuard(model, None, name="s", timeout_s=0.02, restart_after=2, setup_timeout_s=5)
    try:
        for _ in range(16):  # warm-up 15x and each call 3x over timeout_s: all answered
            assert guard.call(SlowModel.run) == 1
        assert guard.timeouts == 0 and guard.failures == 0
        model.each_s = 3.0  # 50x its usual call: a stall
        t0 = time.monotonic()
        with pytest.raises(ModelTimeout):
            guard.call(SlowModel.run)
        assert time.monotonic() - t0 < 1.5
    finally:
        guard.close()


def test_close_releases_a_waiting_caller_at_once_and_closes_later(make_guard: MakeGuard) -> None:
    guard, made = make_guard(timeout_s=30.0)
    made[0].hold.clear()
    outcome: list[BaseException] = []

    def worker() -> None:
        try:
            guard.call(Model.run)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    guard.close()
    thread.join(2.0)
    assert time.monotonic() - t0 < 0.5 and not thread.is_alive()
    assert isinstance(outcome[0], ModelBusy)
    assert not made[0].closed
    made[0].hold.set()
    for _ in range(100):
        if made[0].closed:
            break
        time.sleep(0.01)
    assert made[0].closed
    with pytest.raises(ModelBusy, match="closed"):
        guard.call(Model.run)
    guard.close()  # idempotent


def test_a_remade_animator_gets_the_sessions_portrait_and_quality() -> None:
    made: list[Any] = []

    class Animator(HangAnimator):
        def __init__(self) -> None:
            super().__init__(after=10**9)
            self.reference: np.ndarray | None = None
            self.quality: str | None = None
            self.explode = False
            made.append(self)

        def set_reference(self, image: np.ndarray) -> None:
            self.reference = image

        def set_quality(self, quality: str) -> None:
            self.quality = quality

        def animate(self, driver: np.ndarray, size: int) -> np.ndarray:
            if self.explode:
                raise RuntimeError("boom")
            return super().animate(driver, size)

    sup = SupervisedAnimator(Animator(), Animator, None, name="a", timeout_s=1, restart_after=1)
    portrait = np.full((8, 8, 3), 7, np.uint8)
    sup.set_reference(portrait)
    sup.set_quality("low")
    made[0].explode = True
    with pytest.raises(RuntimeError):
        sup.animate(np.zeros((16, 16, 3), np.uint8), 8)
    deadline = time.monotonic() + 3
    out = None
    while out is None and time.monotonic() < deadline:
        try:
            out = sup.animate(np.zeros((16, 16, 3), np.uint8), 8)
        except ModelBusy:
            time.sleep(0.01)
    assert out is not None
    assert out.shape == (8, 8, 3) and len(made) == 2
    assert made[1].reference is portrait and made[1].quality == "low"
    sup.close()


def test_a_remade_converter_gets_the_live_voice_settings() -> None:
    class Converter(PassthroughConverter):
        def __init__(self) -> None:
            super().__init__()
            self.options: dict[str, Any] = {}
            self.explode = False

        def update(self, **options: Any) -> None:
            self.options.update(options)

        def convert(self, block: np.ndarray) -> np.ndarray:
            if self.explode:
                raise RuntimeError("boom")
            return block

    first = Converter()
    sup = SupervisedConverter(first, Converter, name="v", timeout_s=1, restart_after=1)
    assert sup.block_size == first.block_size and sup.sample_rate == 48000
    sup.update(semitones=3)
    assert first.options == {"semitones": 3}
    first.explode = True
    block = np.zeros(sup.block_size, np.float32)
    with pytest.raises(RuntimeError):
        sup.convert(block)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            sup.convert(block)
            break
        except ModelBusy:
            time.sleep(0.01)
    second = sup.guard.model
    assert second is not first and second.options == {"semitones": 3}  # type: ignore[union-attr]
    plain = SupervisedConverter(
        PassthroughConverter(), None, name="p", timeout_s=1, restart_after=1
    )
    assert sup.live_settings and not plain.live_settings  # the session reads this first
    with pytest.raises(BadInput, match="no live settings"):
        plain.update(semitones=3)
    sup.close()
    plain.close()


def test_cuda_cache_release_is_safe_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    released = []
    cuda = types.SimpleNamespace(
        is_initialized=lambda: True, empty_cache=lambda: released.append(1)
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    release_cached_memory()
    assert released == [1]
    cuda.is_initialized = lambda: False
    release_cached_memory()
    assert released == [1]
    monkeypatch.delitem(sys.modules, "torch")
    release_cached_memory()  # torch never imported: nothing to do, nothing imported
    assert "torch" not in sys.modules


# -- one real session whose models hang ----------------------------------------------------


def classify(img: np.ndarray, frame_id: int) -> str:
    """``inverted`` (the model's output), ``camera`` (the fallback) or ``other``, at
    whatever quality level (size) the frame was made."""
    size = img.shape[0]
    sent = cv2.resize(draw_id(frame_id, 512), (size, size), interpolation=cv2.INTER_AREA)
    err_inverted = np.abs(img.astype(np.int16) - (255 - sent.astype(np.int16))).mean()
    err_camera = np.abs(img.astype(np.int16) - sent.astype(np.int16)).mean()
    if min(err_inverted, err_camera) > 20:
        return "other"
    return "inverted" if err_inverted < err_camera else "camera"


def is_red(img: np.ndarray) -> bool:
    return bool(img[..., 0].mean() > 200 and img[..., 1:].mean() < 60)


class Seen:
    """Output frames of a hang test in order: the model's, the fallback, or red (a
    frame from an abandoned call, which must never be sent)."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.red = 0

    def add(self, img: np.ndarray) -> None:
        frame_id = read_id(img)
        if is_red(img):
            self.red += 1
        elif frame_id is not None:
            self.kinds.append(classify(img, frame_id))

    @property
    def text(self) -> str:
        return " ".join(self.kinds)

    def fell_back_and_recovered(self) -> bool:
        return "inverted camera" in self.text and "camera inverted" in self.text


async def test_hanging_backends_keep_media_flowing_and_are_remade(
    start_server: StartServer,
) -> None:
    """Checked at the server's output tracks (what it hands the encoders), so that a
    client decoder starved on a loaded machine cannot blur what the server did."""
    hang_s = 4.0
    server = await start_server(model_timeout_s=0.3, model_restart_after=2)
    state = server.app[SERVER]
    probe = Probe(
        base_url(server),
        options={
            "face": "hang",
            "voice": "hang",
            "face_options": {"after": 10, "hang_s": hang_s},
            "voice_options": {"after": 40, "hang_s": hang_s},
        },
    )
    seen = Seen()  # each new output frame sampled, in order
    video_gap = audio_gap = 0.0
    try:
        await probe.connect()
        assert probe.session_id is not None
        session = state.sessions[probe.session_id]
        video, audio = session.video, session.audio
        assert video is not None and audio is not None
        start = time.monotonic()
        last_frame = None
        audio_out, audio_moved = audio.frames_out, time.monotonic()
        # Until the face came back from its restart (inverted again after camera frames);
        # a frozen stream would never get there.
        while time.monotonic() - start < 25.0:
            await asyncio.sleep(0.03)
            now = time.monotonic()
            if audio.frames_out != audio_out:
                audio_out, audio_moved = audio.frames_out, now
            audio_gap = max(audio_gap, now - audio_moved)
            if video._last is None:
                continue
            video_gap = max(video_gap, now - video._last_new_sent)
            if video._last is last_frame:
                continue
            last_frame = video._last
            seen.add(last_frame.frame.to_ndarray(format="rgb24"))
            stats = session.stats()
            remade = stats["video"]["restarts"] >= 1 and stats["audio"]["restarts"] >= 1
            if seen.fell_back_and_recovered() and remade:
                break
        assert seen.red == 0, "a frame from an abandoned model call was sent"
        assert "other" not in seen.kinds, seen.kinds
        assert "inverted camera" in seen.text, "no camera fallback during the hang"
        assert "camera inverted" in seen.text, "the face never came back from its restart"
        assert probe.session_id in state.sessions, "the session did not survive"
        stats = session.stats()
        assert stats["video"]["timeouts"] >= 1 and stats["video"]["restarts"] >= 1
        assert stats["audio"]["timeouts"] >= 1 and stats["audio"]["restarts"] >= 1
        assert stats["video"]["errors"] >= 1 and stats["audio"]["errors"] >= 1
        # A frozen stream would show a hole of hang_s (4 s); the one hole we make is the
        # 0.3 s deadline. Half the hang leaves room for a loaded machine's stalls.
        assert video_gap < hang_s / 2, f"no new video frame for {video_gap:.2f} s"
        assert audio_gap < hang_s / 2, f"no audio frame for {audio_gap:.2f} s"
        assert probe.received.video_ids and probe.received.audio_frames > 0
        assert max(probe.received.audio_rms) < 0.9, "the hung converter's noise was sent"
        text = state.metrics.render().decode()
        for track in ("video", "audio"):
            assert metric(text, "mirage_backend_restarts_total", backend="hang", track=track) >= 1
            assert metric(text, "mirage_model_timeouts_total", backend="hang", track=track) >= 1
    finally:
        await probe.close()
    # The abandoned threads end when their calls do, closing their models: nothing stays.
    deadline = time.monotonic() + hang_s + 3
    while mirage_threads() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert mirage_threads() == []
