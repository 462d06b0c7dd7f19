"""RMVPE pitch estimator: log-mel front end, deep U-Net + BiGRU salience net, cents decode.

Weight-compatible with ``rmvpe.pt`` (upstream ``E2E(4, 1, (2, 2))``): the module tree
(``unet.encoder/intermediate/decoder``, ``cnn``, ``fc.0.gru``, ``fc.1``) mirrors it. The
salience has 360 bins, 20 cents apart; ``decode`` takes the salience-weighted mean of
the cents within ±4 bins of the peak and reports 0 Hz where the peak is weak.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

SAMPLE_RATE = 16000
HOP = 160
N_FFT = 1024
N_MELS = 128
N_BINS = 360
#: Cents of salience bin 0 (10 Hz reference); bins are 20 cents apart.
CENTS_OFFSET = 1997.3794084376191
DEFAULT_THRESHOLD = 0.03


def mel_filterbank(
    sr: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    fmin: float = 30.0,
    fmax: float = 8000.0,
) -> np.ndarray:
    """Triangular filters equally spaced on the HTK mel scale, area-normalised (Slaney)."""

    def to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(to_mel(np.array(fmin)), to_mel(np.array(fmax)), n_mels + 2))
    widths = np.diff(edges)
    offsets = edges[:, None] - fft_freqs[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


class ConvBlockRes(nn.Module):
    """Two 3×3 conv-BN-ReLU layers with a residual (1×1 conv when channels change)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out, momentum=0.01),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out, momentum=0.01),
            nn.ReLU(),
        )
        self.shortcut: nn.Module = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) + self.shortcut(x)


class ResStack(nn.Module):
    """``n_blocks`` ConvBlockRes in a row (upstream ResEncoderBlock without pooling)."""

    def __init__(self, c_in: int, c_out: int, n_blocks: int) -> None:
        super().__init__()
        self.conv = nn.ModuleList(
            ConvBlockRes(c_in if i == 0 else c_out, c_out) for i in range(n_blocks)
        )

    def forward(self, x: Tensor) -> Tensor:
        for block in self.conv:
            x = block(x)
        return x


class UNetEncoder(nn.Module):
    """Input BN, then ``n`` (ResStack, 2×2 average pool) stages; keeps the skip tensors."""

    def __init__(self, c_in: int, n: int, pool: Sequence[int], n_blocks: int, c_out: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c_in, momentum=0.01)
        self.layers = nn.ModuleList()
        for _ in range(n):
            self.layers.append(ResStack(c_in, c_out, n_blocks))
            c_in, c_out = c_out, c_out * 2
        self.pool = nn.AvgPool2d((pool[0], pool[1]))
        self.out_channels = c_out

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        skips = []
        x = self.bn(x)
        for layer in self.layers:
            skip = layer(x)
            skips.append(skip)
            x = self.pool(skip)
        return x, skips


class UNetDecoderStage(nn.Module):
    """Transposed-conv upsample, concat the skip, then a ResStack."""

    def __init__(self, c_in: int, c_out: int, stride: Sequence[int], n_blocks: int) -> None:
        super().__init__()
        out_pad = (0, 1) if tuple(stride) == (1, 2) else (1, 1)
        self.conv1 = nn.Sequential(
            nn.ConvTranspose2d(c_in, c_out, 3, (stride[0], stride[1]), 1, out_pad, bias=False),
            nn.BatchNorm2d(c_out, momentum=0.01),
            nn.ReLU(),
        )
        self.conv2 = nn.ModuleList(
            ConvBlockRes(c_out * 2 if i == 0 else c_out, c_out) for i in range(n_blocks)
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = torch.cat((self.conv1(x), skip), dim=1)
        for block in self.conv2:
            x = block(x)
        return x


class UNetDecoder(nn.Module):
    def __init__(self, c_in: int, n: int, stride: Sequence[int], n_blocks: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(n):
            self.layers.append(UNetDecoderStage(c_in, c_in // 2, stride, n_blocks))
            c_in //= 2

    def forward(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        for layer, skip in zip(self.layers, reversed(skips), strict=True):
            x = layer(x, skip)
        return x


class Intermediate(nn.Module):
    def __init__(self, c_in: int, c_out: int, n: int, n_blocks: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            ResStack(c_in if i == 0 else c_out, c_out, n_blocks) for i in range(n)
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class DeepUnet(nn.Module):
    def __init__(
        self, kernel: Sequence[int], n_blocks: int, depth: int, n_inter: int, c_in: int, c_out: int
    ) -> None:
        super().__init__()
        self.encoder = UNetEncoder(c_in, depth, kernel, n_blocks, c_out)
        c = self.encoder.out_channels
        self.intermediate = Intermediate(c // 2, c, n_inter, n_blocks)
        self.decoder = UNetDecoder(c, depth, kernel, n_blocks)

    def forward(self, x: Tensor) -> Tensor:
        x, skips = self.encoder(x)
        return self.decoder(self.intermediate(x), skips)


class BiGRU(nn.Module):
    def __init__(self, n_in: int, n_hidden: int, n_layers: int) -> None:
        super().__init__()
        self.gru = nn.GRU(n_in, n_hidden, n_layers, batch_first=True, bidirectional=True)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.gru(x)[0]
        return out


class Rmvpe(nn.Module):
    """The RMVPE network plus its mel front end (buffers that are not in the state dict).

    ``salience(mel)`` is upstream ``E2E.forward``; ``forward(audio)`` runs the whole
    pipeline and returns the golden manifest's outputs by name.
    """

    mel_basis: Tensor
    window: Tensor

    def __init__(
        self,
        n_blocks: int = 4,
        n_gru: int = 1,
        kernel_size: Sequence[int] = (2, 2),
        en_de_layers: int = 5,
        inter_layers: int = 4,
        in_channels: int = 1,
        en_out_channels: int = 16,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        super().__init__()
        if n_gru < 1:
            raise ValueError("RMVPE without a GRU is not supported")
        self.threshold = threshold
        self.unet = DeepUnet(
            kernel_size, n_blocks, en_de_layers, inter_layers, in_channels, en_out_channels
        )
        self.cnn = nn.Conv2d(en_out_channels, 3, 3, padding=1)
        self.fc = nn.Sequential(
            BiGRU(3 * N_MELS, 256, n_gru), nn.Linear(512, N_BINS), nn.Dropout(0.25), nn.Sigmoid()
        )
        self.register_buffer("mel_basis", torch.from_numpy(mel_filterbank()), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def mel(self, audio: Tensor) -> Tensor:
        """16 kHz audio (B, N) → log mel (B, 128, 1 + N // 160), centre-padded frames."""
        # Always float32, as upstream's separate front end, even in a half-precision model
        # (whose .half() also rounds these buffers: rebuild them then).
        basis, window = self.mel_basis, self.window
        if basis.dtype != torch.float32:
            basis = torch.from_numpy(mel_filterbank()).to(audio.device)
            window = torch.hann_window(N_FFT, device=audio.device)
        spec = torch.stft(
            audio.float(), N_FFT, HOP, N_FFT, window, center=True, return_complex=True
        )
        magnitude = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2))
        return torch.log(torch.clamp(torch.matmul(basis, magnitude), min=1e-5))

    def salience(self, mel: Tensor) -> Tensor:
        """Log mel (B, 128, T) with T a multiple of 32 → salience (B, T, 360) in (0, 1)."""
        x = self.unet(mel.to(self.cnn.weight.dtype).transpose(-1, -2).unsqueeze(1))
        out: Tensor = self.fc(self.cnn(x).transpose(1, 2).flatten(-2))
        return out

    def forward(self, audio: Tensor) -> dict[str, Tensor]:
        mel = self.mel(audio)
        frames = mel.shape[-1]
        mel_padded = F.pad(mel, (0, -frames % 32))
        hidden_padded = self.salience(mel_padded)
        hidden = hidden_padded[:, :frames]
        f0 = torch.from_numpy(decode(hidden[0].detach().float().cpu().numpy(), self.threshold))
        return {
            "mel": mel,
            "mel_padded": mel_padded,
            "hidden_padded": hidden_padded,
            "hidden": hidden,
            "f0": f0,
        }


def decode(salience: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Salience (T, 360) → f0 in Hz (T,), float64; 0 where the peak is ≤ ``threshold``."""
    salience = np.asarray(salience)
    n = salience.shape[0]
    peak = np.argmax(salience, axis=1)
    padded = np.pad(salience, ((0, 0), (4, 4)))
    cents = np.pad(20.0 * np.arange(N_BINS) + CENTS_OFFSET, (4, 4))
    window = peak[:, None] + np.arange(9)[None, :]  # ±4 bins around the peak, padded coords
    weights = padded[np.arange(n)[:, None], window]
    local = np.sum(weights * cents[window], axis=1) / np.sum(weights, axis=1)
    local[np.max(salience, axis=1) <= threshold] = 0
    f0 = 10.0 * 2.0 ** (local / 1200.0)
    f0[f0 == 10.0] = 0.0
    return np.asarray(f0, dtype=np.float64)
