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
from collections.abc import Callable, Iterator
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


def _environment(work: Path, ports: dict[str, int]) -> tuple[dict[str, str], Settings]:
    """The processes' environment (and the same view of it as a Settings) for one stack in ``work``."""
    prepared = Settings()
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
        "nlu_port": ports["NLU"], "kb_port": ports["KB"], "chroma_dir": work / "chroma",
        "tracker_db": work / "tracker.db"})
    return env, settings


def _demo_shop(work: Path) -> None:
    """A copy of the demo shop and its search index in ``work``, so tests can change them."""
    prepared = Settings()
    source_db = prepared.var_dir / "kefu.db"
    if not source_db.exists() or not any(prepared.rasa_model_dir.glob("*.tar.gz")):
        raise StackMissing("the demo shop and models are missing: run `make test` (it runs `kefu setup` first)")
    shutil.copy(source_db, work / "kefu.db")
    if (prepared.var_dir / "chroma").exists():  # the index `kefu setup` built
        shutil.copytree(prepared.var_dir / "chroma", work / "chroma")


@contextmanager
def running_stack(work: Path, log_path: Path) -> Iterator[Stack]:
    """Start every process with honcho from the Procfile (as `make run` does) on free ports with a
    copy of the demo shop in ``work``; stop them after."""
    _demo_shop(work)
    env, settings = _environment(work, {name: free_port() for name in ("GATEWAY", "RASA", "ACTIONS", "NLU", "KB")})
    log = log_path.open("w")
    process = subprocess.Popen([str(PROJECT_ROOT / ".venv" / "bin" / "honcho"), "start", "-f", "Procfile"],
                               cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        _wait_until_ready(settings, lambda: process.poll() is not None, log_path)
        yield Stack(settings, env, log_path)
    finally:
        _stop_group(process)
        log.close()


def _stop_group(process: subprocess.Popen, sig: int = signal.SIGINT, wait_s: float = 30) -> None:
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=wait_s)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def procfile(name: str) -> dict[str, str]:
    """The processes a Procfile names, in order: name -> shell command."""
    commands = {}
    for line in (PROJECT_ROOT / name).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            process, command = line.split(":", 1)
            commands[process.strip()] = command.strip()
    return commands


class Processes:
    """The Procfile's processes, each started on its own (not through honcho, which stops every
    process when one exits), so a test can kill one and start it again."""

    def __init__(self, commands: dict[str, str], env: dict[str, str], log_path: Path) -> None:
        self.commands, self.env, self.log_path = commands, env, log_path
        self.log = log_path.open("a")
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        self.log.write(f"--- starting {name}\n")
        self.log.flush()
        self.running[name] = subprocess.Popen(["bash", "-c", self.commands[name]], cwd=PROJECT_ROOT, env=self.env, stdout=self.log,
                                              stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill a process (and its children) the hard way by default: no shutdown handlers run."""
        self.log.write(f"--- killing {name} with {signal.Signals(sig).name}\n")
        self.log.flush()
        _stop_group(self.running.pop(name), sig, wait_s=30)

    def exited(self) -> list[str]:
        return [name for name, process in self.running.items() if process.poll() is not None]

    def stop_all(self) -> None:
        for name in list(self.running):
            _stop_group(self.running.pop(name))
        self.log.close()


@dataclass(frozen=True)
class ProcessStack(Stack):
    processes: Processes | None = None

    def restart(self, name: str, ready: Callable[[], bool] | None = None, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        assert self.processes is not None
        self.processes.start(name)
        check = ready or (lambda: _ready(self.settings, name))
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready after {timeout_s}s; see {self.log_path}")
            time.sleep(0.5)


@contextmanager
def process_stack(work: Path, log_path: Path) -> Iterator[ProcessStack]:
    """The Procfile's processes started one by one on free ports with a copy of the demo shop (what
    the no-loss test kills and restarts)."""
    _demo_shop(work)
    env, settings = _environment(work, {name: free_port() for name in ("GATEWAY", "RASA", "ACTIONS", "NLU", "KB")})
    log_path.write_text("")
    processes = Processes(procfile("Procfile"), env, log_path)
    try:
        for name in processes.commands:
            processes.start(name)
        _wait_until_ready(settings, lambda: bool(processes.exited()), log_path)
        yield ProcessStack(settings, env, log_path, processes)
    finally:
        processes.stop_all()


def _health_urls(settings: Settings) -> dict[str, str]:
    urls = {
        "gateway": f"{settings.gateway_url}/health",
        "nlu": f"http://127.0.0.1:{settings.nlu_port}/status",
        "actions": f"http://127.0.0.1:{settings.actions_port}/health",
        "kb": f"{settings.kb_url}/health",
    }
    replicas = settings.rasa_replicas
    urls.update({"rasa" if i == 0 else f"rasa_{chr(ord('a') + i)}": f"{url}/status" for i, url in enumerate(replicas)})
    if settings.chroma_url:
        urls["chroma"] = f"{settings.chroma_url}/api/v2/heartbeat"
    return urls


def _ready(settings: Settings, name: str) -> bool:
    url = _health_urls(settings).get(name)
    if url is None:
        return True
    try:
        response = httpx.get(url, timeout=2)
        return response.status_code == 200 and (not name.startswith("rasa") or bool(response.json().get("model_id")))
    except (httpx.HTTPError, ValueError):
        return False


def _wait_until_ready(settings: Settings, failed: Callable[[], bool], log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    pending = set(_health_urls(settings))
    while pending:
        if failed():
            raise RuntimeError(f"the stack exited early; see {log_path}:\n{log_path.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {STARTUP_TIMEOUT_S}s: {sorted(pending)}; see {log_path}")
        pending = {name for name in pending if not _ready(settings, name)}
        time.sleep(1)


# the machine's own PostgreSQL and Redis (CI has them too); the scaled-out stack makes its own
# databases and key prefix there and removes them after
PG_ADMIN_URL = os.environ.get("KEFU_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("KEFU_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextmanager
def scaleout_stack(work: Path, log_path: Path) -> Iterator[ProcessStack]:
    """The scaled-out shape (Procfile.scaleout): two Rasa replicas behind the gateway sharing a
    PostgreSQL tracker store and a Redis lock store, kefu's database in PostgreSQL (the demo shop
    copied there with `kefu db copy`'s function) and the knowledge base in a Chroma server."""
    import secrets
    from urllib.parse import urlparse

    import psycopg
    import redis

    from assistant.commerce.db import copy_database

    _demo_shop(work)
    token = secrets.token_hex(4)
    databases = {"kefu": f"kefu_{token}", "tracker": f"kefu_tracker_{token}"}
    admin = urlparse(PG_ADMIN_URL)
    pg = f"{admin.username or 'postgres'}{':' + admin.password if admin.password else ''}@" \
         f"{admin.hostname or '127.0.0.1'}:{admin.port or 5432}"
    redis_url = urlparse(REDIS_URL)
    prefix = f"kefutest{token}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        for name in databases.values():
            connection.execute(f'CREATE DATABASE "{name}"')
    ports = {name: free_port() for name in ("GATEWAY", "RASA", "RASA_B", "ACTIONS", "NLU", "KB", "CHROMA")}
    env, settings = _environment(work, ports)
    kefu_url = f"postgresql+psycopg://{pg}/{databases['kefu']}"
    host = "127.0.0.1"
    env.update({
        "KEFU_DATABASE_URL": kefu_url,
        "KEFU_TRACKER_STORE_URL": f"postgresql+psycopg://{pg}/{databases['tracker']}",
        "KEFU_TRACKER_PG_HOST": admin.hostname or host, "KEFU_TRACKER_PG_PORT": str(admin.port or 5432),
        "KEFU_TRACKER_PG_DB": databases["tracker"], "KEFU_TRACKER_PG_USER": admin.username or "postgres",
        "KEFU_TRACKER_PG_PASSWORD": admin.password or "",
        "KEFU_REDIS_HOST": redis_url.hostname or host, "KEFU_REDIS_PORT": str(redis_url.port or 6379),
        "KEFU_REDIS_DB": (redis_url.path or "/0").strip("/") or "0", "KEFU_REDIS_PREFIX": prefix,
        "KEFU_CHROMA_URL": f"http://{host}:{ports['CHROMA']}", "KEFU_CHROMA_SERVER_DIR": str(work / "chroma-server"),
        "KEFU_RASA_URLS": f"http://{host}:{ports['RASA']},http://{host}:{ports['RASA_B']}",
        "KEFU_NLU_URL": f"http://{host}:{ports['NLU']}", "KEFU_ACTIONS_URL": f"http://{host}:{ports['ACTIONS']}",
    })
    settings = settings.model_copy(update={
        "database_url": kefu_url, "tracker_store_url": env["KEFU_TRACKER_STORE_URL"],
        "chroma_url": env["KEFU_CHROMA_URL"], "rasa_urls": env["KEFU_RASA_URLS"]})
    log_path.write_text("")
    processes = Processes(procfile("Procfile.scaleout"), env, log_path)
    try:
        copy_database(f"sqlite:///{work / 'kefu.db'}", kefu_url)
        for name in processes.commands:
            processes.start(name)
        _wait_until_ready(settings, lambda: bool(processes.exited()), log_path)
        yield ProcessStack(settings, env, log_path, processes)
    finally:
        processes.stop_all()
        from assistant.commerce.db import engine_for

        engine_for(kefu_url).dispose()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
            for name in databases.values():
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
