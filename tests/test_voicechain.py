"""The voice chain in front of the converter: noise suppression, then the voice gate.

Real speech (espeak-ng), a generated fan's noise, the real WebRTC suppressor, the
passthrough and dsp converters, and a real server session for the option.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from mirage.client.probe import Probe
from mirage.engine.denoise import DEFAULT_LEVEL, parse_denoise
from mirage.engine.strength import StrengthTiming, SuppressionStrength
from mirage.engine.voicechain import CleanVoice, split_options
from mirage.models import create_converter
from mirage.models.base import BadInput, VoiceConverter
from mirage.models.voice.passthrough import PassthroughConverter
from mirage.state import SERVER
from tests.server_fixtures import StartServer, base_url
from tests.speech import speech
from tests.test_loopback import metric

RATE = 16000
HOP = 160  # the suppressor's 10 ms at 16 kHz


def fan(seconds: float, rate: int, rms: float, seed: int = 0) -> np.ndarray:
    """A fan: pink-ish broadband noise with a 120 Hz motor hum and its harmonics."""
    n = round(seconds * rate)
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / rate), 50.0))
    noise = np.fft.irfft(spectrum, n)
    t = np.arange(n) / rate
    hum = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 6))
    x = noise / noise.std() + 0.3 * hum / hum.std()
    return (x * rms / x.std()).astype(np.float32)


def stream(converter: VoiceConverter, x: np.ndarray) -> np.ndarray:
    """``x`` through ``converter`` block by block (the tail short of a block is cut)."""
    size = converter.block_size
    n = len(x) // size * size
    return np.concatenate([converter.convert(x[i : i + size]) for i in range(0, n, size)])


def lag_ms(x: np.ndarray, y: np.ndarray, rate: int) -> float:
    """How late ``y`` is against ``x``: the peak of their cross-correlation."""
    n = len(x) + len(y)
    corr = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)
    return float(np.argmax(corr[: rate // 10])) / rate * 1000


def band_change_db(x: np.ndarray, y: np.ndarray, low: float, high: float) -> float:
    """How much louder ``y`` is than ``x`` between ``low`` and ``high`` Hz."""
    n = min(len(x), len(y))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    band = (freqs >= low) & (freqs < high)
    px, py = (np.abs(np.fft.rfft(s[:n]))[band] ** 2 for s in (x, y))
    return float(10 * np.log10(py.sum() / px.sum()))


def test_the_suppressor_gives_a_low_voice_its_fundamental_back() -> None:
    """WebRTC's suppressor cuts a male voice's fundamental (-5.8 dB over 50-160 Hz on
    clean speech) and the converter then makes a thin, breathy voice of it; the chain's
    low shelf brings the band back (to -2.2 dB) and leaves the rest alone. The shelf
    follows the suppressor's strength: on clean speech (the suppressor bypassed) the
    band is the input's."""
    x = speech("The quick brown fox jumps over the lazy dog.", pitch=30)
    full = CleanVoice(PassthroughConverter(RATE, 10.0), DEFAULT_LEVEL)
    always = StrengthTiming(noisy_db=1e3, clean_db=1e3 + 1)  # full strength on any input
    full.cleaner.suppressor.strength = SuppressionStrength(HOP, RATE, always)
    y = stream(full, x)[round(full.delay_s * RATE) :]
    assert band_change_db(x, y, 50, 160) > -3.5
    assert abs(band_change_db(x, y, 300, 4000)) < 1.0
    x = np.concatenate([np.zeros(RATE // 2, np.float32), x, x])
    chain = CleanVoice(PassthroughConverter(RATE, 10.0), DEFAULT_LEVEL)
    delay = round(chain.delay_s * RATE)
    y = stream(chain, x)[delay:]
    settled = slice(2 * RATE, len(y))  # the strength is 0 from here
    assert abs(band_change_db(x[settled], y[settled], 50, 160)) < 0.5
    assert abs(band_change_db(x[settled], y[settled], 300, 4000)) < 0.5


@pytest.mark.parametrize(
    "make",
    [
        lambda: PassthroughConverter(48000, 20.0),
        lambda: create_converter("dsp", preset="bright"),
    ],
    ids=["passthrough-48k", "dsp-bright"],
)
def test_background_only_comes_out_silent(make: Any) -> None:
    inner = make()
    chain = CleanVoice(inner, DEFAULT_LEVEL)
    noise = fan(4.0, inner.sample_rate, rms=0.03)
    out = stream(chain, noise)
    assert np.max(np.abs(out)) < 1e-4, f"background came through at {np.max(np.abs(out)):.4f}"
    share = chain.gate_open_share
    assert share is not None and share < 0.05, share


def test_speech_onsets_are_not_clipped_by_more_than_one_hop() -> None:
    """Each word after a pause long enough to close the gate is heard at full level one
    hop (10 ms) after its first sound, over a fan at 20 dB SNR."""
    words = [speech("Hello there."), speech("Mirage speaks."), speech("Seven.")]
    gap = np.zeros(RATE * 6 // 10, np.float32)  # 0.6 s: the gate closes (0.25 s)
    clean = np.concatenate(
        [np.zeros(RATE * 2, np.float32), *(np.concatenate([w, gap]) for w in words)]
    )
    noise = fan(len(clean) / RATE, RATE, rms=float(np.sqrt(np.mean(words[0] ** 2))) / 10)
    chain = CleanVoice(PassthroughConverter(RATE, 10.0), DEFAULT_LEVEL)
    delay = round(chain.latency_s * RATE)
    out = stream(chain, clean + noise)
    onsets, start = [], RATE * 2
    for w in words:
        loud = np.flatnonzero(np.abs(w) > 0.1 * np.max(np.abs(w)))
        onsets.append(start + int(loud[0]))
        start += len(w) + len(gap)
    for onset in onsets:
        window = slice(onset + HOP, onset + HOP + 2 * HOP)  # from one hop after it, 20 ms
        heard = out[window.start + delay : window.stop + delay]
        said = clean[window]
        ratio = np.sqrt(np.mean(heard**2) / np.mean(said**2))
        assert ratio > 0.5, f"onset at {onset / RATE:.2f} s came out at {ratio:.2f} of its level"


@pytest.mark.parametrize(
    "make",
    [
        lambda: PassthroughConverter(48000, 20.0),
        lambda: PassthroughConverter(16000, 10.0),
        lambda: PassthroughConverter(16000, 5.0),
        lambda: create_converter("dsp", preset="neutral"),
        lambda: create_converter("dsp", preset="neutral", block_ms=80),
    ],
    ids=["passthrough-48k-20ms", "16k-10ms", "16k-5ms", "dsp-160ms", "dsp-80ms"],
)
def test_the_delay_reported_is_the_delay_measured(make: Any) -> None:
    inner = make()
    chain = CleanVoice(inner, DEFAULT_LEVEL)
    rate = inner.sample_rate
    voice = speech(rate=RATE)
    if rate != RATE:
        import soxr

        voice = soxr.resample(voice, RATE, rate).astype(np.float32)
    x = np.concatenate([np.zeros(rate // 2, np.float32), voice])
    measured = lag_ms(x, stream(chain, x), rate)
    assert measured == pytest.approx(chain.latency_s * 1000, abs=2.0)
    assert chain.delay_s <= 0.011  # ≤ 10 ms from 10 ms blocks up; 11 ms at 5 ms blocks


def test_the_option_values_and_live_changes() -> None:
    assert [parse_denoise(v) for v in ("off", "on", "low", "max", True, False, 2, "3")] == [
        0,
        DEFAULT_LEVEL,
        1,
        4,
        DEFAULT_LEVEL,
        0,
        2,
        3,
    ]
    for bad in ("loud", 5, -1, 1.5, None, [], {}):
        with pytest.raises(BadInput, match="denoise must be"):
            parse_denoise(bad)
    # Converting voices get the chain by default; the passthrough only when asked.
    assert split_options("dsp", {"preset": "deep"}) == ({"preset": "deep"}, DEFAULT_LEVEL)
    assert split_options("passthrough", {}) == ({}, None)
    assert split_options("passthrough", {"denoise": "low"}) == ({}, 1)
    chain = CleanVoice(create_converter("dsp", preset="deep"), 1)
    with pytest.raises(BadInput):
        chain.update(denoise="max", semitones="high")  # a bad dsp value: nothing changes
    assert chain.level == 1
    with pytest.raises(BadInput):
        chain.update(denoise="loud", semitones=3)
    assert chain.level == 1 and chain.inner.params.semitones != 3  # type: ignore[attr-defined]
    chain.update(denoise="off", semitones=3)
    assert chain.level == 0 and chain.inner.params.semitones == 3  # type: ignore[attr-defined]
    plain = CleanVoice(PassthroughConverter(), 2)
    with pytest.raises(BadInput, match="no live settings"):
        plain.update(denoise="off", semitones=3)
    assert plain.level == 2


@pytest.mark.parametrize("rate", [16000, 48000])
def test_switching_off_live_lets_the_background_through_without_a_jump(rate: int) -> None:
    chain = CleanVoice(PassthroughConverter(rate, 10.0), DEFAULT_LEVEL)
    noise = fan(3.0, rate, rms=0.03)
    first = stream(chain, noise[: rate * 2])
    chain.update(denoise="off")
    second = stream(chain, noise[rate * 2 :])
    assert np.max(np.abs(first[rate:])) < 1e-4
    delay = round(chain.latency_s * rate)
    # Off: the input itself, whole band, the same delay late (the A/V sync needs no change).
    np.testing.assert_array_equal(second, noise[rate * 2 - delay : rate * 3 - delay])


async def _offer_sdp() -> str:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio", direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


async def test_bad_denoise_is_400_at_offer_and_it_changes_live(start_server: StartServer) -> None:
    server = await start_server()
    url = base_url(server)
    sdp = await _offer_sdp()
    async with aiohttp.ClientSession() as http:
        for value in ("loud", 9):
            options = {"voice": "dsp", "voice_options": {"denoise": value}}
            body = {"sdp": sdp, "type": "offer", "options": options}
            async with http.post(f"{url}/offer", json=body) as resp:
                assert resp.status == 400, await resp.text()
                assert "denoise must be" in (await resp.json())["error"]
    probe = Probe(url, video=False, options={"voice": "dsp", "voice_options": {"denoise": "low"}})
    try:
        await probe.connect()
        session = server.app[SERVER].sessions[probe.session_id]
        chain = session.backends.converter.guard.model
        assert isinstance(chain, CleanVoice) and chain.level == 1
        async with aiohttp.ClientSession() as http:
            patch = f"{url}/sessions/{probe.session_id}"
            async with http.patch(patch, json={"voice_options": {"denoise": "max"}}) as resp:
                assert resp.status == 200, await resp.text()
            assert chain.level == 4
            async with http.patch(patch, json={"voice_options": {"denoise": "loud"}}) as resp:
                assert resp.status == 400 and "denoise must be" in (await resp.json())["error"]
            assert chain.level == 4
        text = ""
        for _ in range(50):
            await asyncio.sleep(0.2)
            text = server.app[SERVER].metrics.render().decode()
            if "mirage_voice_gate_open_ratio{" in text:
                break
        stage = metric(text, "mirage_stage_seconds_count", stage="convert.denoise", track="audio")
        assert stage > 0
        assert f'mirage_voice_gate_open_ratio{{session="{probe.session_id}"}}' in text
        assert session.stats()["audio"]["gate_open_share"] is not None
        assert f'mirage_voice_suppressor_strength{{session="{probe.session_id}"}}' in text
        strength = session.stats()["audio"]["suppressor_strength"]
        assert strength is not None and 0.0 <= strength <= 1.0
    finally:
        await probe.close()
