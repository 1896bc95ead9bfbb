"""The whole kefu stack (NLU server, action server, Rasa, knowledge base, gateway, pricing) started
from the Procfile with honcho, on free ports, against a copy of the demo shop: what the end-to-end
tests and the benchmarks that need real processes run against."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from assistant.settings import PROJECT_ROOT, Settings

STARTUP_TIMEOUT_S = 240  # Rasa loads TensorFlow and the model: about 30 s here, slower on a cold disk


class StackMissing(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Stack:
    settings: Settings
    env: dict[str, str]
    log_path: Path

    @property
    def gateway(self) -> str:
        return self.settings.gateway_url

    @property
    def ws_url(self) -> str:
        return self.gateway.replace("http", "ws", 1) + "/ws/chat"

    @property
    def phone_url(self) -> str:
        return self.gateway.replace("http", "ws", 1) + "/ws/voice"


@contextmanager
def running_stack(work: Path, log_path: Path) -> Iterator[Stack]:
    """Start every process on free ports with a copy of the demo shop in ``work``; stop them after."""
    prepared = Settings()
    source_db = prepared.var_dir / "kefu.db"
    if not source_db.exists() or not any(prepared.rasa_model_dir.glob("*.tar.gz")):
        raise StackMissing("the demo shop and models are missing: run `make test` (it runs `kefu setup` first)")
    shutil.copy(source_db, work / "kefu.db")
    if (prepared.var_dir / "chroma").exists():  # the index `kefu setup` built; copied so tests can change it
        shutil.copytree(prepared.var_dir / "chroma", work / "chroma")
    ports = {name: free_port() for name in ("GATEWAY", "RASA", "ACTIONS", "NLU", "KB")}
    env = {
        **os.environ,
        "KEFU_HOST": "127.0.0.1",
        **{f"KEFU_{name}_PORT": str(port) for name, port in ports.items()},
        "KEFU_VAR_DIR": str(prepared.var_dir),
        "KEFU_DATABASE_URL": f"sqlite:///{work / 'kefu.db'}",
        "KEFU_TRACKER_DB": str(work / "tracker.db"),
        "KEFU_CHROMA_DIR": str(work / "chroma"),
        "KEFU_SECRET_KEY": "test-secret-key",
        "KEFU_ADMIN_TOKEN": "test-admin-token",
        # every test shopper comes from 127.0.0.1: the per-address limits are for the real world
        # (tests/test_widget_limits.py checks them); one conversation keeps its default limit
        "KEFU_WIDGET_MESSAGES_PER_ADDRESS_MINUTE": "100000",
        "KEFU_WIDGET_CONNECTIONS_PER_ADDRESS_MINUTE": "100000",
        "KEFU_SUPPORT_HOURS": "00:00-00:00",  # agents on duty whenever the tests run (after hours: test_handoff.py)
        "KEFU_PRICING_INTERVAL_S": "86400",  # the engine re-prices at midnight, not in the middle of a test
        "PYTHONWARNINGS": "ignore",
    }
    settings = Settings(_env_file=None, **{  # the same view of the configuration the processes have
        "var_dir": prepared.var_dir, "database_url": env["KEFU_DATABASE_URL"], "secret_key": "test-secret-key",
        "gateway_port": ports["GATEWAY"], "rasa_port": ports["RASA"], "actions_port": ports["ACTIONS"],
        "nlu_port": ports["NLU"], "kb_port": ports["KB"], "chroma_dir": work / "chroma"})
    log = log_path.open("w")
    process = subprocess.Popen([str(PROJECT_ROOT / ".venv" / "bin" / "honcho"), "start", "-f", "Procfile"],
                               cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        _wait_until_ready(settings, process, log_path)
        yield Stack(settings, env, log_path)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _wait_until_ready(settings: Settings, process: subprocess.Popen, log_path: Path) -> None:
    checks = {
        "gateway": f"{settings.gateway_url}/health",
        "nlu": f"http://127.0.0.1:{settings.nlu_port}/status",
        "actions": f"http://127.0.0.1:{settings.actions_port}/health",
        "rasa": f"{settings.rasa_url}/status",
        "kb": f"{settings.kb_url}/health",
    }
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    pending = dict(checks)
    while pending:
        if process.poll() is not None:
            raise RuntimeError(f"the stack exited early; see {log_path}:\n{log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {STARTUP_TIMEOUT_S}s: {sorted(pending)}; see {log_path}")
        for name, url in list(pending.items()):
            try:
                response = httpx.get(url, timeout=2)
                if response.status_code == 200 and (name != "rasa" or response.json().get("model_id")):
                    del pending[name]
            except httpx.HTTPError:
                pass
        time.sleep(1)
