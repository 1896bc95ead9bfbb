"""A Redis lock store for several Rasa replicas that really excludes them from each other.

Rasa's own ``RedisLockStore`` keeps a conversation's ticket queue as one JSON value that each
replica reads, changes and writes back: two replicas that take a ticket at the same moment both
read the same queue, both get the same number and both go ahead. With the SQL tracker store
(which appends the events past the count it last saw) one of the two turns then vanishes from the
tracker. Its tickets also expire a fixed time after they were issued, waiting included, so a
queue of slow turns lets the last ones in while earlier ones are still running.

Here a conversation's lock is one Redis key taken atomically (``SET NX`` with a lease), renewed
while the turn runs and released only by its holder (a compare-and-delete script). A replica
that dies holding it frees the conversation when the lease runs out. Waiters on one replica queue
in arrival order before they compete for the key.

Loaded by Rasa from ``endpoints.scaleout.yml``::

    lock_store:
      type: addons.redis_lock.KefuRedisLockStore
      url: ...
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncGenerator, Dict, Text

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, LockStore
from rasa.utils.endpoints import EndpointConfig

log = logging.getLogger(__name__)

LEASE_S = 30.0  # how long a lock outlives a replica that died holding it
POLL_S = 0.05

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
          "else return 0 end")


class KefuRedisLockStore(LockStore):
    """Mutual exclusion per conversation across every Rasa replica that shares the Redis."""

    def __init__(self, endpoint_config: EndpointConfig) -> None:
        import redis

        options: Dict[str, Any] = dict(endpoint_config.kwargs)
        db, key_prefix = int(options.get("db", 1) or 0), options.get("key_prefix")  # 1: Rasa's default
        lease_s = float(options.get("lease_s", LEASE_S))
        self.red = redis.StrictRedis(host=endpoint_config.url or "localhost", port=int(options.get("port", 6379)),
                                     db=db, password=options.get("password") or None,
                                     ssl=bool(options.get("use_ssl", False)),
                                     socket_timeout=float(options.get("socket_timeout", 10.0)))
        self.key_prefix = f"{key_prefix}:kefu_lock:" if key_prefix else "kefu_lock:"
        self.lease_ms = int(lease_s * 1000)
        self.renew_every_s = lease_s / 3  # two renewals may be late before the lease runs out
        self._release = self.red.register_script(_RELEASE)
        self._renew = self.red.register_script(_RENEW)
        self._local: Dict[str, asyncio.Lock] = {}  # this replica's waiters, in arrival order
        self._users: Dict[str, int] = {}  # turns holding or awaiting each local lock (to drop it when none)
        super().__init__()
        log.info("conversation locks in Redis db %s under %s*, with a %.0f s lease", db, self.key_prefix, lease_s)

    @asynccontextmanager
    async def lock(self, conversation_id: Text, lock_lifetime: float = LOCK_LIFETIME,
                   wait_time_in_seconds: float = 1) -> AsyncGenerator[TicketLock, None]:
        """Hold the conversation until the block ends; wait at most ``lock_lifetime`` seconds for
        it (then ``LockError``, as Rasa's stores raise)."""
        local = self._local.setdefault(conversation_id, asyncio.Lock())
        self._users[conversation_id] = self._users.get(conversation_id, 0) + 1
        try:
            async with local:
                key, token = self.key_prefix + conversation_id, uuid.uuid4().hex
                await self._acquire(key, token, conversation_id, lock_lifetime, min(wait_time_in_seconds, POLL_S))
                renewing = asyncio.create_task(self._keep(key, token, conversation_id))
                try:
                    yield TicketLock(conversation_id)
                finally:
                    renewing.cancel()
                    self._release(keys=[key], args=[token])
        finally:
            self._users[conversation_id] -= 1
            if not self._users[conversation_id]:
                del self._users[conversation_id], self._local[conversation_id]

    async def _acquire(self, key: str, token: str, conversation_id: str, patience_s: float, poll_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience_s
        while not self.red.set(key, token, nx=True, px=self.lease_ms):
            if loop.time() > deadline:
                raise LockError(f"Could not acquire lock for conversation_id '{conversation_id}'.")
            await asyncio.sleep(poll_s)

    async def _keep(self, key: str, token: str, conversation_id: str) -> None:
        while True:
            await asyncio.sleep(self.renew_every_s)
            if not self._renew(keys=[key], args=[token, self.lease_ms]):
                log.error("lost the lock of conversation %s (its lease ran out)", conversation_id)
                return
