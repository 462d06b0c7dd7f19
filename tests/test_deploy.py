"""deploy/ and the Dockerfile cannot be run here (no Docker, no cluster), so these
tests read them: they parse, and their names, ports and paths agree with each
other and with the server. Also the instance id that makes routing possible."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirage.cli import build_parser
from mirage.cli.serve import settings_from_args
from mirage.client.probe import Probe
from mirage.config import Settings, from_env
from tests.server_fixtures import StartServer, base_url

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PORT = Settings().port


def nginx_instances() -> dict[str, str]:
    """instance id → the host:port nginx's per-instance upstream points at, with the
    checks that its pool and its id-prefix map line are there too."""
    conf = (DEPLOY / "nginx" / "mirage.conf").read_text()
    blocks = dict(re.findall(r"upstream (\w+) \{([^}]*)\}", conf))
    pool = re.findall(r"server ([\w.:-]+)", blocks.pop("mirage_pool"))
    out = {}
    for name, body in blocks.items():
        inst = name.removeprefix("mirage_")
        (addr,) = re.findall(r"server ([\w.:-]+);", body)
        assert addr in pool, f"{addr} is not in mirage_pool, so it gets no new sessions"
        assert re.search(rf'"~\^{inst}-"\s+{name};', conf), f"no map line routes {inst}- ids"
        out[inst] = addr
    return out


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def k8s() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((DEPLOY / "k8s" / "mirage.yaml").read_text()))


def test_nginx_compose_k8s_and_prometheus_name_the_same_instances() -> None:
    instances = nginx_instances()
    assert set(instances) == {"a", "b"}
    assert all(addr == f"mirage-{i}:{PORT}" for i, addr in instances.items()), instances

    services = compose()["services"]
    for inst in instances:
        svc = services[f"mirage-{inst}"]
        assert svc["environment"]["MIRAGE_INSTANCE_ID"] == inst
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"] and len(devices[0]["device_ids"]) == 1
    gpus = [services[f"mirage-{i}"]["deploy"]["resources"]["reservations"] for i in instances]
    assert len({d["devices"][0]["device_ids"][0] for d in gpus}) == len(instances), "GPU shared"

    docs = {(d["kind"], d["metadata"]["name"]): d for d in k8s()}
    for inst in instances:
        pod = docs[("Deployment", f"mirage-{inst}")]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MIRAGE_INSTANCE_ID"] == inst and env["MIRAGE_PORT"] == str(PORT)
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/health"
        assert pod["securityContext"]["runAsNonRoot"] is True
        service = docs[("Service", f"mirage-{inst}")]["spec"]
        assert service["ports"][0]["port"] == PORT

    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert sorted(job["static_configs"][0]["targets"]) == sorted(instances.values())


def test_grafana_provisioning_finds_the_dashboard_and_its_datasource() -> None:
    ds = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"][0]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "mirage.json").read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    assert uids == {ds["uid"]}
    assert ds["url"] == "http://prometheus:9090" and "prometheus" in compose()["services"]

    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "mirage.yaml").read_text()
    )["providers"][0]
    mounts = dict(v.split(":")[:2] for v in compose()["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    for service in compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):  # (../models: the git-ignored weights folder)
                assert (DEPLOY / source).exists(), f"compose mounts missing {source}"


def test_dockerfile_builds_a_cuda_gpu_image_run_by_a_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:\S+-runtime-", text, re.M)
    assert '.[gpu]"' in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(rf"^EXPOSE {PORT}/tcp", text, re.M)
    assert "/health" in text.split("HEALTHCHECK", 1)[1]
    assert 'VOLUME ["/app/models"]' in text
    env = dict(re.findall(r"(MIRAGE_\w+)=(\S+)", text))
    settings = from_env(env)  # the image's defaults parse, and mean what they say
    assert settings.host == "0.0.0.0" and settings.port == PORT
    assert settings.udp_ports is not None
    low, high = settings.udp_ports
    assert f"EXPOSE {PORT}/tcp {low}-{high}/udp" in text


def test_instance_id_from_env_and_flag_and_its_checks() -> None:
    assert from_env({"MIRAGE_INSTANCE_ID": "gpu3"}).instance_id == "gpu3"
    assert Settings().instance_id == ""
    args = build_parser().parse_args(["serve", "--instance-id", "b2"])
    assert settings_from_args(args, {"MIRAGE_INSTANCE_ID": "a"}).instance_id == "b2"
    for bad in ("A", "a-b", "a/b", "x" * 33):
        with pytest.raises(ValueError, match="instance id must be 1-32 of a-z and 0-9"):
            from_env({"MIRAGE_INSTANCE_ID": bad})
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--instance-id", "No"])


async def test_session_ids_carry_the_instance_id(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mirage.webrtc")
    for instance_id, pattern in (("q7", r"q7-[0-9a-f]{32}"), ("", r"[0-9a-f]{32}")):
        server = await start_server(instance_id=instance_id)
        probe = Probe(base_url(server), size=128, fps=10.0)
        try:
            await probe.connect()
            assert re.fullmatch(pattern, str(probe.session_id)), probe.session_id
        finally:
            await probe.close()
        # The logs name the session by its whole id: a prefix would be the instance's.
        assert f"session {probe.session_id} closing: closed by DELETE" in caplog.text
