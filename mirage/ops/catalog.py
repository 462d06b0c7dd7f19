"""Every weight file a backend can use: where it goes, where it comes from, size, sha256, licence.

Sizes and hashes are the Git LFS pointers of the files on the Hugging Face hub (the
``oid sha256`` / ``size`` of each file, as the hub's file pages show them). A value we
could not confirm is ``None`` and is reported as "unknown (not verified)" — never guessed.

Paths are relative to the weights folder and must match what the loaders open; a test
checks them against ``liveportrait.loader.CHECKPOINT_FILES``, ``rvc.checkpoint`` and
``face.scrfd`` so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: The hub every official file is fetched from (``--base-url`` / MIRAGE_WEIGHTS_URL override it).
DEFAULT_BASE_URL = "https://huggingface.co"

LIVEPORTRAIT_REPO = "KwaiVGI/LivePortrait"
RVC_REPO = "lj1995/VoiceConversionWebUI"

# Each licence text, word for word, is a row of THIRD_PARTY.md, which says where it was read.
_LP_LICENCE = (
    "LivePortrait weights: MIT (KwaiVGI/LivePortrait LICENSE and its Hugging Face model card)"
)
_INSIGHTFACE_LICENCE = (
    "InsightFace detection model (det_10g.onnx): non-commercial research purposes only"
)
_HUBERT_LICENCE = (
    "HuBERT/ContentVec content encoder: MIT as the lj1995/VoiceConversionWebUI model card"
    " states; ContentVec's own repository states no licence (unclear)"
)
_RMVPE_LICENCE = (
    "RMVPE pitch model: MIT as the lj1995/VoiceConversionWebUI model card states; the RMVPE"
    " authors' repository states no licence we could read (unclear)"
)
_USER_LICENCE = "your own file: you need the right to use the voice it imitates"


@dataclass(frozen=True)
class WeightFile:
    """One weight file of one backend."""

    backend: str  # liveportrait | scrfd | rvc
    path: str  # relative to the weights folder
    description: str
    licence: str
    repo: str | None = None  # Hugging Face repo it is downloaded from; None = the user's file
    remote: str | None = None  # path inside ``repo``
    size: int | None = None  # bytes; None = unknown
    sha256: str | None = None  # hex; None = unknown
    required: bool = True  # the backend cannot run without it
    noncommercial: bool = False  # downloaded only with explicit consent

    @property
    def downloadable(self) -> bool:
        return self.repo is not None and self.remote is not None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def url(self, base_url: str = DEFAULT_BASE_URL) -> str:
        """``<base>/<repo>/resolve/main/<remote>``: the hub's download URL layout."""
        if not self.downloadable:
            raise ValueError(f"{self.path} is not downloadable: {self.description}")
        return f"{base_url.rstrip('/')}/{self.repo}/resolve/main/{self.remote}"


CATALOG: tuple[WeightFile, ...] = (
    # LivePortrait: the five networks (loader.CHECKPOINT_FILES) and the official landmark model.
    WeightFile(
        "liveportrait",
        "liveportrait/base_models/appearance_feature_extractor.pth",
        "LivePortrait appearance feature extractor (F)",
        _LP_LICENCE,
        LIVEPORTRAIT_REPO,
        "liveportrait/base_models/appearance_feature_extractor.pth",
        3_387_959,
        "5279bb8654293dbdf327030b397f107237dd9212fb11dd75b83dfb635211ceb5",
    ),
    WeightFile(
        "liveportrait",
        "liveportrait/base_models/motion_extractor.pth",
        "LivePortrait motion extractor (M)",
        _LP_LICENCE,
        LIVEPORTRAIT_REPO,
        "liveportrait/base_models/motion_extractor.pth",
        112_545_506,
        "251e6a94ad667a1d0c69526d292677165110ef7f0cf0f6d199f0e414e8aa0ca5",
    ),
    WeightFile(
        "liveportrait",
        "liveportrait/base_models/warping_module.pth",
        "LivePortrait warping module (W)",
        _LP_LICENCE,
        LIVEPORTRAIT_REPO,
        "liveportrait/base_models/warping_module.pth",
        None,  # about 182 MB; the exact byte count was not found
        "2f61a6f265fe344f14132364859a78bdbbc2068577170693da57fb96d636e282",
    ),
    WeightFile(
        "liveportrait",
        "liveportrait/base_models/spade_generator.pth",
        "LivePortrait SPADE generator (G)",
        _LP_LICENCE,
        LIVEPORTRAIT_REPO,
        "liveportrait/base_models/spade_generator.pth",
        221_813_590,
        "4780afc7909a9f84e24c01d73b31a555ef651521a1fe3b2429bd04534d992aee",
    ),
    WeightFile(
        "liveportrait",
        "liveportrait/retargeting_models/stitching_retargeting_module.pth",
        "LivePortrait stitching and eye/lip retargeting MLPs (S)",
        _LP_LICENCE,
        LIVEPORTRAIT_REPO,
        "liveportrait/retargeting_models/stitching_retargeting_module.pth",
        2_393_098,
        "3652d5a3f95099141a56986aaddec92fadf0a73c87a20fac9a2c07c32b28b611",
    ),
    WeightFile(
        "liveportrait",
        "liveportrait/landmark.onnx",
        "LivePortrait's 203-point landmark model (used when present, else MediaPipe's points)",
        _LP_LICENCE,
        LIVEPORTRAIT_REPO,
        "liveportrait/landmark.onnx",
        None,  # about 115 MB; the exact byte count was not found
        "31d22a5041326c31f19b78886939a634a5aedcaa5ab8b9b951a1167595d147db",
        required=False,
    ),
    # SCRFD face detector: LivePortrait's hub repo carries insightface's buffalo_l det_10g.
    WeightFile(
        "scrfd",
        "insightface/models/buffalo_l/det_10g.onnx",
        "SCRFD-10GF face detector (insightface buffalo_l); the shipped detector is used without it",
        _INSIGHTFACE_LICENCE,
        LIVEPORTRAIT_REPO,
        "insightface/models/buffalo_l/det_10g.onnx",
        16_923_827,
        "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
        required=False,
        noncommercial=True,
    ),
    # RVC: content encoder and pitch model from the RVC project, the voice model from the user.
    WeightFile(
        "rvc",
        "hubert/hubert_base.pt",
        "HuBERT/ContentVec base content encoder (fairseq checkpoint)",
        _HUBERT_LICENCE,
        RVC_REPO,
        "hubert_base.pt",
        189_507_909,
        "f54b40fd2802423a5643779c4861af1e9ee9c1564dc9d32f54f20b5ffba7db96",
    ),
    WeightFile(
        "rvc",
        "rmvpe/rmvpe.pt",
        "RMVPE pitch model (without it the shipped pitch tracker is used)",
        _RMVPE_LICENCE,
        RVC_REPO,
        "rmvpe.pt",
        181_184_272,
        "6d62215f4306e3ca278246188607209f09af3dc77ed4232efdd069798c4ec193",
        required=False,
    ),
    WeightFile(
        "rvc",
        "rvc/model.pth",
        "your RVC v1/v2 voice model (.pth, as RVC's WebUI exports it): copy it here",
        _USER_LICENCE,
    ),
    WeightFile(
        "rvc",
        "rvc/features.index",
        "optional faiss retrieval index trained with that model (added_*.index): copy it here",
        _USER_LICENCE,
        required=False,
    ),
)

BACKENDS: tuple[str, ...] = ("liveportrait", "scrfd", "rvc")


class UnknownTarget(ValueError):
    """A name that is neither a backend nor a catalog file."""


def select(targets: Iterable[str] = ()) -> list[WeightFile]:
    """Catalog entries for backend names, file paths or file names; all of them for none."""
    wanted = list(targets)
    if not wanted:
        return list(CATALOG)
    chosen: list[WeightFile] = []
    for target in wanted:
        hits = [w for w in CATALOG if target in (w.backend, w.path, w.name)]
        if not hits:
            known = ", ".join(BACKENDS)
            raise UnknownTarget(f"unknown weight {target!r}: give a backend ({known}) or a file")
        chosen.extend(w for w in hits if w not in chosen)
    return chosen


def human_size(size: int | None) -> str:
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover
