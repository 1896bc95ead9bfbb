"""docker/ describes the same scaled-out shape that tests/test_scaleout.py runs from
Procfile.scaleout (no Docker engine runs on these machines, so the shape itself is tested with
real processes; this keeps the container files in step with it)."""

from __future__ import annotations

import re

import yaml

from assistant.settings import PROJECT_ROOT
from tests.stack import procfile

DOCKER = PROJECT_ROOT / "docker"


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yml").read_text())


def env_file() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in (DOCKER / "scaleout.env").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_every_process_of_the_scaled_out_procfile_is_a_service() -> None:
    services = compose()["services"]
    for process, command in procfile("Procfile.scaleout").items():
        name = {"rasa": "rasa-a", "rasa_b": "rasa-b"}.get(process, process)
        assert name in services, f"{process} of Procfile.scaleout has no service in docker/compose.yml"
        if process.startswith("rasa"):
            assert "endpoints.scaleout.yml" in command
    assert {"postgres", "redis", "chroma", "setup", "rasa-train"} <= set(services)


def test_rasa_replicas_and_the_gateway_agree_on_the_replicas() -> None:
    env = env_file()
    replicas = [url.split("//")[1].split(":")[0] for url in env["KEFU_RASA_URLS"].split(",")]
    assert replicas == ["rasa-a", "rasa-b"]
    gateway = compose()["services"]["gateway"]
    assert set(replicas) <= set(gateway["depends_on"])


def test_every_variable_rasa_reads_is_set() -> None:
    wanted = set(re.findall(r"\$\{(\w+)\}", (PROJECT_ROOT / "assistant" / "endpoints.scaleout.yml").read_text()))
    missing = wanted - set(env_file())
    assert not missing, f"docker/scaleout.env lacks {sorted(missing)}"


def test_the_rasa_image_carries_kefus_channel_and_the_scaled_out_endpoints() -> None:
    dockerfile = (DOCKER / "Dockerfile.rasa").read_text()
    for needed in ("assistant/addons", "endpoints.scaleout.yml", "credentials.yml", "logging.yml", "rasa==3.6.21"):
        assert needed in dockerfile
    credentials = yaml.safe_load((PROJECT_ROOT / "assistant" / "credentials.yml").read_text())
    assert "addons.kefu_channel.KefuInput" in credentials


def test_the_app_image_never_gets_torchvision_and_setup_leaves_rasa_to_its_image() -> None:
    dockerfile = (DOCKER / "Dockerfile.app").read_text()
    assert "torch==2.13.0" in dockerfile and "! pip show torchvision" in dockerfile
    assert compose()["services"]["setup"]["command"] == ["kefu", "setup", "--no-rasa"]
