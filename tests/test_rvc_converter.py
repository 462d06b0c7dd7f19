"""The streaming ``rvc`` converter: stream vs offline, seams, silence, errors; pitch; index.

No real weights exist here: a small HuBERT (fairseq layout, random) and a small v1
synthesizer (random, written as an RVC ``.pth``) are made in a temporary weights folder.
The architecture and every streaming stage are the real ones; only the widths are small.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mirage.app import create_app
from mirage.models import VoiceConverter, create_converter
from mirage.models.base import BadInput, WeightsMissing
from mirage.models.checkpoint import BadCheckpoint
from mirage.models.voice.rvc import pitch as rvc_pitch
from mirage.models.voice.rvc.checkpoint import save_synthesizer
from mirage.models.voice.rvc.converter import RvcConverter
from mirage.models.voice.rvc.files import unavailable_reason
from mirage.models.voice.rvc.index import FeatureIndex
from mirage.models.voice.rvc.synthesizer import Synthesizer, SynthesizerConfig
from tests.conftest import load_fill
from tests.delay import measured_delay
from tests.server_fixtures import LOOPBACK
from tests.speech import speech
from tests.test_hubert_mapping import checkpoint, fairseq_state

#: A small 32 kHz v1 model: the official layout with narrow channels.
SMALL_V1_32K = [1025, 32, 16, 16, 32, 2, 2, 3, 0, "1", [3, 7, 11], [[1, 3, 5]] * 3,
                [10, 8, 2, 2], 32, [20, 16, 4, 4], 4, 16, 32000]  # fmt: skip
QUIET = dict(noise_scale=0.0, nsf_noise_scale=0.0)  # deterministic, as the golden run


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_weights(root: Path) -> Path:
    """A weights folder: random fairseq HuBERT (v1 widths) and a filled small v1 model.

    The synthesizer gets the golden fill rule (unit-gain weights, so its output depends on
    its inputs) with the prior encoder's attention outputs zeroed: like a trained model it
    then looks only a few frames around each frame, so a stream can match a whole pass.
    """
    (root / "hubert").mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint(fairseq_state(final=256, layers=9)), root / "hubert" / "hubert_base.pt")
    model = Synthesizer(SynthesizerConfig.from_list(SMALL_V1_32K), "v1")
    fill = load_fill()
    entries = [
        (k, list(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in model.state_dict().items()
    ]
    arrays = fill.fill_state(entries, 20240601)
    for key in arrays:
        if key.endswith("attn_layers.0.conv_o.weight") or key.endswith(
            "attn_layers.1.conv_o.weight"
        ):
            arrays[key] = arrays[key] * 0.0
    fill.load_into(model, arrays)
    save_synthesizer(root / "rvc" / "model.pth", model, info="test")
    return root


class LocalEncoder(torch.nn.Module):
    """Stand-in content encoder with HuBERT's framing (400-sample window, 320 hop) but no
    sequence-wide normalisation or attention: its features do not depend on the window."""

    dim = 256

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(1, self.dim, 400, 320)

    @torch.inference_mode()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(5 * wav[:, None])).transpose(1, 2)


class Unvoiced:
    """Pitch tracker that hears no voice: the NSF source stays silent."""

    name = "unvoiced"

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return np.zeros(len(audio) // 160 + 1)

    def segment(self, samples: int) -> int:
        return samples


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_weights(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    return np.array(speech()[: 3 * 16000])


def stream(conv: RvcConverter, x: np.ndarray) -> np.ndarray:
    n = len(x) // conv.block_size
    blocks = x[: n * conv.block_size].reshape(n, conv.block_size)
    return np.concatenate([conv.convert(b) for b in blocks])


def test_protocol_sizes_and_latency(models: Path) -> None:
    conv = create_converter("rvc", models_dir=str(models), block_ms=100, **QUIET)
    assert isinstance(conv, VoiceConverter)
    assert (conv.sample_rate, conv.block_size) == (16000, 1600)
    assert conv.latency_s == pytest.approx(0.040 + 0.010)  # crossfade + search, not the block
    out = conv.convert(np.zeros(1600, np.float32))
    assert out.shape == (1600,) and out.dtype == np.float32


def test_streaming_matches_offline_away_from_seams(models: Path, voice: np.ndarray) -> None:
    """Window bookkeeping, skip/warm-up frames, resampling, loudness and SOLA line up.

    The stand-in encoder and a silent NSF source remove the two things a stream can never
    reproduce exactly (HuBERT's window-wide group norm, the sine's start phase), so what
    is left is the stream's own arithmetic: in the settled middle of every block it must
    equal the whole-signal pass. Each block's last ~60 ms were decoded without future
    context (upstream's design, hidden by the crossfade) and are not compared.
    """
    # The arithmetic does not depend on the block; 160 ms blocks leave the middle of each
    # one the ~150 ms of future this filled model's convolutions see (a trained model's
    # receptive field is shorter), so there stream and whole pass can agree exactly.
    conv = RvcConverter(models_dir=str(models), block_ms=160, **QUIET)
    conv.encoder = LocalEncoder()
    conv.tracker = conv._pitch.tracker = Unvoiced()
    offline = conv.convert_offline(voice)
    assert offline.shape == voice.shape
    streamed = stream(conv, voice)
    block, lag = conv.block_size, round(conv.latency_s * 16000)
    # latency_s (crossfade + search) is the lag: SOLA picks offset 0 on settled audio
    got, want = streamed[lag:], offline[: len(streamed) - lag]
    phase = (np.arange(len(got)) + lag) % block
    settled = (phase >= conv.layout.crossfade * 160) & (phase < block // 2)
    settled[: 2 * block] = False

    def rel(a: np.ndarray) -> float:
        return float(np.sqrt(np.mean((a - want)[settled] ** 2) / np.mean(want[settled] ** 2)))

    assert rel(got) < 0.03, f"stream differs from offline by {rel(got):.3f} of its RMS"
    # the measure can fail: one frame (10 ms) of misalignment is far outside it
    assert rel(streamed[lag - 160 : lag - 160 + len(want)]) > 10 * rel(got)


def test_default_streams_100_ms_blocks_latency_s_behind(models: Path, voice: np.ndarray) -> None:
    """The default block is 100 ms, and ``latency_s`` is the stream's lag behind the whole
    pass as spectrogram cross-correlation measures it (within 2 ms): the block is not
    counted again."""
    conv = RvcConverter(models_dir=str(models), **QUIET)
    assert conv.block_size == 1600 and conv.latency_s == pytest.approx(0.050)
    conv.encoder = LocalEncoder()
    conv.tracker = conv._pitch.tracker = Unvoiced()
    offline = conv.convert_offline(voice)
    streamed = stream(conv, voice)
    assert abs(measured_delay(offline, streamed) - conv.latency_s * 16000) <= 32


def test_streaming_keeps_the_offline_spectrum(models: Path, voice: np.ndarray) -> None:
    """Full pipeline (HuBERT layout, DIO pitch): about the same long-term spectrum.

    A coarse check only: a random HuBERT attends across its whole window and group-norms
    each channel over it, so its features depend on the window (trained ContentVec does so
    far less), and the NSF sine restarts its phase in every chunk. Gross faults (a wrong
    rate, a lost band, buzz from bad seams) move whole bands by much more than this.
    """
    conv = RvcConverter(models_dir=str(models), **QUIET)
    offline = conv.convert_offline(voice)
    streamed = stream(conv, voice)
    lag = round(conv.latency_s * 16000)
    got, want = streamed[lag + 2 * conv.block_size :], offline[2 * conv.block_size :]
    want = want[: len(got)]

    def ltas(a: np.ndarray) -> np.ndarray:  # long-term average spectrum, dB, 1/3-octave-ish
        spec = np.abs(np.fft.rfft(a.reshape(-1, 512) * np.hanning(512), axis=1)) ** 2
        bands = np.geomspace(4, 256, 19).astype(int)
        power = [spec[:, lo:hi].mean() for lo, hi in itertools.pairwise(bands)]
        return 10 * np.log10(np.array(power) + 1e-12)

    n = len(got) // 512 * 512
    diff = np.abs(ltas(got[:n]) - ltas(want[:n]))
    assert diff.max() < 4.0, f"long-term spectrum differs by up to {diff.max():.1f} dB"
    assert diff.mean() < 1.5, f"long-term spectrum differs by {diff.mean():.1f} dB on average"


def test_seams_do_not_click(models: Path, voice: np.ndarray) -> None:
    conv = RvcConverter(models_dir=str(models), block_ms=100, **QUIET)
    out = stream(conv, voice)
    step = np.abs(np.diff(out))
    seams = np.zeros(len(step), bool)
    for k in range(1, len(out) // conv.block_size):
        seams[k * conv.block_size - 4 : k * conv.block_size + 4] = True
    own_range = np.abs(np.diff(conv.convert_offline(voice))).max()
    assert step[seams].max() <= own_range
    assert step[seams].max() <= step[~seams].max()


def test_silence_in_near_silence_out(models: Path) -> None:
    conv = RvcConverter(models_dir=str(models), **QUIET)
    silent = [conv.convert(np.zeros(conv.block_size, np.float32)) for _ in range(6)]
    assert np.abs(np.concatenate(silent)).max() < 1e-4
    hiss = np.random.default_rng(0).normal(0, 1e-4, conv.block_size * 6).astype(np.float32)
    out = stream(conv, hiss)
    assert np.sqrt(np.mean(out**2)) < 1e-3  # -60 dBFS


def test_semitones_change_the_output(models: Path, voice: np.ndarray) -> None:
    base = RvcConverter(models_dir=str(models), **QUIET).convert_offline(voice)
    up = RvcConverter(models_dir=str(models), semitones=12, **QUIET).convert_offline(voice)
    assert np.sqrt(np.mean((up - base) ** 2)) > 0.1 * np.sqrt(np.mean(base**2))


def test_wrong_sample_rate_is_refused(models: Path) -> None:
    with pytest.raises(BadInput, match="16000 Hz"):
        create_converter("rvc", models_dir=str(models), sample_rate=48000)


def test_bad_blocks_are_refused(models: Path) -> None:
    conv = RvcConverter(models_dir=str(models), **QUIET)
    with pytest.raises(BadInput, match="1600 samples"):
        conv.convert(np.zeros(960, np.float32))
    with pytest.raises(BadInput, match="NaN"):
        conv.convert(np.full(conv.block_size, np.nan, np.float32))
    with pytest.raises(BadInput, match="block_ms"):
        RvcConverter(models_dir=str(models), block_ms=5000)


def test_missing_weights_are_named(tmp_path: Path, models: Path) -> None:
    assert "rvc/model.pth" in str(unavailable_reason(str(tmp_path)))
    with pytest.raises(WeightsMissing, match=r"model\.pth"):
        RvcConverter(models_dir=str(tmp_path))
    (tmp_path / "rvc").mkdir()
    (tmp_path / "rvc" / "model.pth").write_bytes((models / "rvc" / "model.pth").read_bytes())
    assert "hubert/hubert_base.pt" in str(unavailable_reason(str(tmp_path)))
    with pytest.raises(WeightsMissing, match=r"hubert_base\.pt"):
        RvcConverter(models_dir=str(tmp_path))
    assert unavailable_reason(str(models)) is None


@pytest.mark.parametrize("broken", ["rvc/model.pth", "hubert/hubert_base.pt"])
def test_corrupt_checkpoint_is_named(tmp_path: Path, models: Path, broken: str) -> None:
    for name in ("rvc/model.pth", "hubert/hubert_base.pt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        data = (models / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 3] if name == broken else data)
    with pytest.raises(BadCheckpoint, match=broken.split("/")[1].replace(".", r"\.")):
        RvcConverter(models_dir=str(tmp_path))


async def test_a_damaged_model_file_is_a_server_fault(
    aiohttp_client: Any, tmp_path: Path, models: Path
) -> None:
    """503, as for LivePortrait's files and an absent file: the client cannot repair the
    server's weights folder (tests/test_liveportrait_loader.py asserts the same)."""
    for name in ("rvc/model.pth", "hubert/hubert_base.pt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        data = (models / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 3] if name == "rvc/model.pth" else data)
    assert unavailable_reason(str(tmp_path)) is None  # present: only loading finds the fault
    client = await aiohttp_client(create_app(LOOPBACK.replace(models_dir=str(tmp_path))))
    sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    body = {"sdp": sdp, "type": "offer", "options": {"voice": "rvc", "voice_options": QUIET}}
    resp = await client.post("/offer", data=json.dumps(body))
    answer = await resp.json()
    assert resp.status == 503, answer
    assert f"cannot read RVC model {tmp_path / 'rvc' / 'model.pth'}" in answer["error"]


def test_index_retrieval_pulls_features(tmp_path: Path, models: Path, voice: np.ndarray) -> None:
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(1)
    stored = rng.normal(size=(64, 256)).astype(np.float32)
    flat = faiss.IndexFlatL2(256)
    flat.add(stored)
    path = tmp_path / "features.index"
    faiss.write_index(flat, str(path))
    index = FeatureIndex(path, 256)
    # an exact match dominates its inverse-square weighting
    np.testing.assert_allclose(index.retrieve(stored[:3]), stored[:3], atol=1e-4)
    query = stored[:2] + 0.5 * rng.normal(size=(2, 256)).astype(np.float32)
    distance, ids = flat.search(query, 8)
    weight = 1 / distance**2
    want = np.einsum("tk,tkd->td", weight / weight.sum(1, keepdims=True), stored[ids])
    np.testing.assert_allclose(index.retrieve(query), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(index.blend(query, 0.0), query)
    with pytest.raises(WeightsMissing, match=r"features\.index holds 256-dim"):
        FeatureIndex(path, 768)
    # the converter uses it when it sits beside the model
    (tmp_path / "rvc").mkdir()
    for name in ("rvc/model.pth", "hubert/hubert_base.pt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((models / name).read_bytes())
    faiss.write_index(flat, str(tmp_path / "rvc" / "features.index"))
    with_index = RvcConverter(models_dir=str(tmp_path), index_rate=1.0, **QUIET)
    assert with_index.index is not None
    plain = RvcConverter(models_dir=str(models), index_rate=1.0, **QUIET)
    assert plain.index is None
    a, b = with_index.convert_offline(voice[:16000]), plain.convert_offline(voice[:16000])
    assert np.sqrt(np.mean((a - b) ** 2)) > 0.05 * np.sqrt(np.mean(b**2))


def test_coarse_pitch_matches_upstream_quantisation() -> None:
    f0 = np.array([0.0, 30.0, 50.0, 100.0, 440.0, 1100.0, 2000.0])
    coarse = rvc_pitch.coarse_pitch(f0)
    mel = 1127 * np.log(1 + f0 / 700)
    lo, hi = 1127 * np.log(1 + 50 / 700), 1127 * np.log(1 + 1100 / 700)
    want = np.clip(np.rint((mel - lo) * 254 / (hi - lo) + 1), 1, 255)
    want[0] = 1
    np.testing.assert_array_equal(coarse, want)
    assert coarse.dtype == np.int64 and coarse[2] == 1 and coarse[5] == 255
    np.testing.assert_allclose(rvc_pitch.shift(np.array([0.0, 220.0]), 12), [0.0, 440.0])
    np.testing.assert_allclose(rvc_pitch.shift(np.array([440.0]), -7), [440 * 2 ** (-7 / 12)])
    np.testing.assert_array_equal(
        rvc_pitch.fill_unvoiced(np.array([0.0, 100.0, 0.0, 200.0, 0.0])),
        [100.0, 100.0, 150.0, 200.0, 200.0],
    )
    np.testing.assert_array_equal(rvc_pitch.fill_unvoiced(np.zeros(3)), np.zeros(3))


def test_fallback_tracker_follows_a_gliding_voice() -> None:
    t = np.arange(16000) / 16000
    f0 = 150 + 100 * t  # 150 → 250 Hz glide
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(0.3 / k * np.sin(k * phase) for k in range(1, 6)).astype(np.float32)
    tracker = rvc_pitch.make_tracker(Path("/nonexistent/rmvpe.pt"), torch.device("cpu"))
    assert tracker.name == "dio"
    got = tracker(x)
    assert got.shape == (16000 // 160 + 1,)
    truth = 150 + 100 * np.arange(len(got)) * 160 / 16000
    inner = slice(5, -5)
    np.testing.assert_allclose(got[inner], truth[inner], rtol=0.03)
    # the streaming cache agrees with tracking the whole window, away from its newest edge
    window = x[:6400]
    cached = rvc_pitch.StreamingPitch(tracker, 40)
    for end in range(1600, 6401, 1600):
        cached.update(np.pad(window[:end], (6400 - end, 0)), 10)
    whole = tracker(window)[:40]
    np.testing.assert_allclose(cached.cache[5:-2], whole[5:-2], rtol=0.03)


def test_rmvpe_is_required_when_asked_for(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissing, match=r"rmvpe\.pt"):
        rvc_pitch.make_tracker(tmp_path / "rmvpe" / "rmvpe.pt", torch.device("cpu"), "rmvpe")
    with pytest.raises(ValueError, match="unknown pitch method"):
        rvc_pitch.make_tracker(tmp_path / "rmvpe.pt", torch.device("cpu"), "crepe")


@pytest.mark.slow
async def test_rvc_runs_inside_the_server(models: Path, start_server: object) -> None:
    """A v1 model and a fairseq HuBERT from the weights folder, through the real audio path
    over Opus: converted audio comes back and the converter never fell back."""
    import asyncio

    from mirage.client.probe import Probe
    from mirage.engine.denoise import NS_DELAY
    from mirage.engine.denoise import RATE as NS_RATE
    from mirage.state import SERVER
    from tests.server_fixtures import base_url

    server = await start_server(models_dir=str(models))  # type: ignore[operator]
    probe = Probe(
        base_url(server),
        video=False,
        beep_on_s=0.4,
        tone_hz=180.0,
        harmonics=10,
        options={"voice": "rvc", "voice_options": {"device": "cpu", "context_s": 0.5}},
    )
    try:
        await probe.connect()
        session = server.app[SERVER].sessions[probe.session_id]
        assert session.backends.voice == "rvc"
        for _ in range(600):
            await asyncio.sleep(0.1)
            if any(rms > 0.01 for rms in probe.received.audio_rms[-100:]):
                break
        assert any(rms > 0.01 for rms in probe.received.audio_rms), "no converted audio came back"
        assert session.audio is not None and session.audio.errors == 0
        # crossfade + search (50 ms), + the noise suppressor rvc comes behind by default
        suppressor_ms = 1000 * NS_DELAY / NS_RATE
        assert session.stats()["audio"]["latency_ms"] == pytest.approx(
            50.0 + suppressor_ms, abs=1.0
        )
    finally:
        await probe.close()
