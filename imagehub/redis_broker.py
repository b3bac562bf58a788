"""Dramatiq's Redis broker, woken by each message instead of polling.

Dramatiq's Redis consumer polls an empty queue and sleeps between polls with exponential
backoff up to the worker's idle timeout: a message sent to an idle worker waits for the end
of that sleep (up to IMAGEHUB_WORKER_POLL_MS), and a short timeout, which keeps that wait
small, costs a Redis script call per consumer every few milliseconds, CPU the web process,
the database and the device's own host threads share. Here every message sent also pushes a
token on a per-queue wake list, and an idle consumer blocks on that list (BLPOP) for at most
its idle timeout instead of sleeping: it fetches as soon as a message is sent, and an idle
worker makes one Redis call per timeout.

Only the wait changes: fetching, acks, heartbeats, dead-message maintenance and delayed
messages stay Dramatiq's (its Lua scripts), and a lost token only means the message is
fetched at the next timeout, as before. Dramatiq has no hook for the wait itself (it sleeps
inside `_RedisConsumer.__next__`), hence the subclass; tests/test_redis_broker.py runs it
against a real Redis.
"""

from __future__ import annotations

import time

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

# Tokens kept on a wake list when no consumer is waiting (they only cause spare fetches).
WAKE_TOKENS_KEPT = 64
WAKE_LIST_TTL_SECONDS = 60


class WakingRedisBroker(RedisBroker):
    def wake_key(self, queue_name: str) -> str:
        return f"{self.namespace}:{queue_name}.wake"

    @property
    def consumer_class(self):
        return _WakingConsumer

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        message = super().enqueue(message, delay=delay)
        # A delayed message is due later: its consumer checks the delay queue at least
        # once per idle timeout, as Dramatiq's does.
        if delay is None:
            self._wake(message.queue_name)
        return message

    def _wake(self, queue_name: str) -> None:
        key = self.wake_key(queue_name)
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.lpush(key, 1)
            pipe.ltrim(key, 0, WAKE_TOKENS_KEPT - 1)
            pipe.expire(key, WAKE_LIST_TTL_SECONDS)
            pipe.execute()
        except redis.RedisError:
            # The message is enqueued; without its token it is fetched at the next
            # timeout, as with Dramatiq's own polling.
            self.logger.warning("could not wake the consumers of %s", queue_name, exc_info=True)


class _WakingConsumer(_RedisConsumer):
    def __next__(self):
        try:
            while True:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:  # see dramatiq's consumer (its issue #266)
                        continue
                    self.misses = 0
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                if self.outstanding_message_count < self.prefetch:
                    self.message_cache = self.broker.do_fetch(
                        self.queue_name, self.prefetch - self.outstanding_message_count
                    )
                    if self.message_cache:
                        continue
                    self._wait_for_message()
                else:
                    # Every prefetch slot holds a message in work: nothing to fetch until
                    # one is acked. Dramatiq's consumer sleeps here too.
                    time.sleep(min(self.timeout, 100) / 1000)
                return None  # lets the worker check whether it is stopping
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None

    def _wait_for_message(self) -> None:
        if self.queue_name.endswith(".DQ"):
            # Delayed messages wake nobody: their eta is checked once per timeout.
            time.sleep(self.timeout / 1000)
            return
        key = self.broker.wake_key(self.queue_name)
        # BLPOP takes fractional seconds (Redis >= 6); 0 would mean forever.
        self.broker.client.blpop([key], timeout=max(self.timeout, 1) / 1000)
