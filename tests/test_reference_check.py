"""POST /reference checks the portrait with a model made for the check only: closed
afterwards, and made from the server's weights folder (--models-dir), as sessions are."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from mirage.models.avatar.warp.animator import WarpAnimator
from mirage.state import SERVER
from tests.conftest import MEDIA
from tests.server_fixtures import StartServer, base_url


async def upload(url: str, image: Path) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "image/jpeg"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/reference", data=image.read_bytes(), headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def test_the_portrait_check_closes_its_model(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[WarpAnimator] = []
    real_close = WarpAnimator.close

    def close(self: WarpAnimator) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(WarpAnimator, "close", close)
    server = await start_server(face="warp")
    status, answer = await upload(base_url(server), MEDIA / "s0.jpg")
    assert status == 200 and answer["target"] == "default", answer
    assert len(closed) == 1, "the warp animator made to find the face was never closed"


async def test_the_portrait_check_reads_the_servers_weights_folder(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server(models_dir=str(tmp_path))
    # As if liveportrait were the default here (its weights are not in tmp_path).
    server.app[SERVER].defaults["face"] = "liveportrait"
    before = server.app[SERVER].reference
    status, answer = await upload(base_url(server), MEDIA / "s0.jpg")
    assert status == 503 and answer["kind"] == "WeightsMissing", answer
    assert str(tmp_path) in str(answer["error"]), answer
    assert server.app[SERVER].reference is before, "a refused portrait replaced the default"
