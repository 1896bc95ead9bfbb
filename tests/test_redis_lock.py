"""kefu's Redis lock store (assistant/addons/redis_lock.py) in the Rasa environment, as two Rasa
replicas use it: two processes, each with its own store and many concurrent turns of one
conversation, each turn a read-pause-write of a shared counter that any overlap would lose."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from assistant.settings import Settings
from tests.stack import REDIS_URL

ROOT = Path(__file__).resolve().parents[1]

REPLICA = r"""
import asyncio, sys
sys.path.insert(0, "assistant")
from addons.redis_lock import KefuRedisLockStore
from rasa.core.lock_store import LockError
from rasa.utils.endpoints import EndpointConfig

host, port, db, prefix, turns, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6]
store = KefuRedisLockStore(endpoint_config=EndpointConfig(url=host, port=port, db=db, key_prefix=prefix,
                                                          type="addons.redis_lock.KefuRedisLockStore", lease_s=2))
counter = f"{prefix}:counter"

async def turn():
    async with store.lock("shopper-1", wait_time_in_seconds=0.01):
        value = int(store.red.get(counter) or 0)
        await asyncio.sleep(0.01)  # the turn's work: another turn slipping in here loses an increment
        store.red.set(counter, value + 1)

async def held_past_its_lease():
    async with store.lock("shopper-2"):
        await asyncio.sleep(7)  # longer than the 2 s lease: renewal keeps it
        print("renewed" if store.red.get(store.key_prefix + "shopper-2") else "lost", flush=True)

async def impatient():
    try:
        async with store.lock("shopper-2", lock_lifetime=1):
            print("entered", flush=True)
    except LockError:
        print("LockError", flush=True)

async def main():
    if mode == "turns":
        await asyncio.gather(*(turn() for _ in range(turns)))
    elif mode == "hold":
        await held_past_its_lease()
    else:
        await impatient()

asyncio.run(main())
"""


@pytest.fixture()
def redis_target():
    redis = pytest.importorskip("redis")
    from urllib.parse import urlparse

    url = urlparse(REDIS_URL)
    client = redis.Redis.from_url(REDIS_URL)
    prefix = "kefutest" + uuid.uuid4().hex[:10]
    yield (url.hostname or "127.0.0.1", url.port or 6379, int((url.path or "/0").strip("/") or 0), prefix, client)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def replica(target, turns: int, mode: str) -> subprocess.Popen:
    host, port, db, prefix, _ = target
    python = Settings().rasa_venv / "bin" / "python"
    return subprocess.Popen([str(python), "-c", REPLICA, host, str(port), str(db), prefix, str(turns), mode],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def held(target, timeout_s: float = 10.0) -> str:
    """Waits until the "hold" replica has taken shopper-2's lock; its Redis key."""
    _, _, _, prefix, client = target
    key = f"{prefix}:kefu_lock:shopper-2"
    deadline = time.monotonic() + timeout_s
    while not client.exists(key):
        assert time.monotonic() < deadline, "the holder never took the lock"
        time.sleep(0.05)
    return key


def test_two_replicas_never_hold_one_conversation_at_once(redis_target):
    replicas = [replica(redis_target, 40, "turns") for _ in range(2)]
    for process in replicas:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err[-2000:]
    _, _, _, prefix, client = redis_target
    assert int(client.get(f"{prefix}:counter")) == 80  # every read-pause-write happened alone
    assert not list(client.scan_iter(f"{prefix}:kefu_lock:*"))  # and every lock was released


def test_a_long_turn_keeps_its_lock_and_a_waiter_gives_up_with_a_lock_error(redis_target):
    holder = replica(redis_target, 0, "hold")
    held(redis_target)
    waiter = replica(redis_target, 0, "wait")
    out, err = waiter.communicate(timeout=60)
    assert out.strip() == "LockError", err[-2000:]
    out, err = holder.communicate(timeout=60)
    assert out.strip() == "renewed", err[-2000:]


def test_a_dead_replicas_lock_frees_the_conversation_when_its_lease_runs_out(redis_target):
    holder = replica(redis_target, 0, "hold")
    key = held(redis_target)
    client = redis_target[4]
    holder.kill()  # SIGKILL: no release
    holder.communicate()
    assert client.exists(key)
    ttl_ms = client.pttl(key)
    assert 0 < ttl_ms <= 2000, ttl_ms  # gone within the 2 s lease
    time.sleep(ttl_ms / 1000 + 0.2)
    assert not client.exists(key)
