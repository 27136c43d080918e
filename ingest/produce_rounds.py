"""Produce rounds sent from the event loop's callbacks, without aiokafka's sender task in between.

aiokafka's sender is a task that wakes when its accumulator has data, drains it, and starts one more task per
produce request, which waits for the response through a timeout coroutine and ends; only then does the sender
wake again. That machinery is about a quarter of a lone round's CPU: in a loop against a real broker, a round of
one record took 339–419 µs of CPU sent from here and 461–622 µs through the sender. At the rates webhooks usually
arrive each request gets a round of its own, and the service used about 12% less CPU per request at 300 requests
a second and 8% less at 1,000; at saturation, where rounds carry about 32 records, no difference was measurable
(session 15, ``docs/PERFORMANCE.md``).

``DirectRounds.send`` writes a round's produce request to the broker's connection at once and handles the
response in the callback of its future. Everything else is aiokafka's own, so the idempotent producer's
guarantees hold as they do for its sender:

* the batches are aiokafka's ``MessageBatch`` es, given their sequence numbers exactly as its accumulator
  does when the sender drains them (``_pop_batch``), and counted among its pending batches (``flush`` and
  ``stop`` wait for them);
* the request is written and its response read by ``ingest.produce_codec`` (the same bytes and structure as
  aiokafka's, in a fraction of the CPU), and the response handled by its ``SendProduceReqHandler``:
  acknowledged batches resolve, a batch refused for good fails, and one to retry goes back into its
  accumulator after the retry backoff, where its sender retries it with the same sequence numbers;
* while a round is in flight, its broker counts as in flight for the sender and its partitions as muted, so
  the sender never has a second request to that broker or those partitions on the way (it sends one at a
  time, and only so do sequence numbers stay in order across a retry);
* a connection error or no response within the request timeout is what ``AIOKafkaClient.send`` makes of it
  (the connection closed and renewed, the batches retried).

Used only when the round can go at once: the producer is idempotent, not transactional and waits for
acknowledgements, has its producer id, is neither closed nor failed, the sender has nothing in flight to the
broker, the connection to it is up, and none of the round's partitions has a batch in the accumulator (it would
have to go first) or in a request of the sender's. Otherwise the caller queues its batches into the
accumulator, as before. A bug while writing fails the round's batches (their records spool; the sequence
numbers they took make the next batches of those partitions fail too, which restarts the producer,
``ingest.publisher``) and releases the broker. This relies on aiokafka 0.14's internals, like
``ingest.batching._Accumulator``; ``tests/unit/test_ingest_produce_rounds.py`` checks them against the installed
version, and a producer without them (a test double, another version) gets ``None`` from ``of``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka.client import ConnectionGroup
from aiokafka.conn import CloseReason
from aiokafka.errors import KafkaConnectionError, KafkaError, RequestTimedOutError
from aiokafka.producer.message_accumulator import BatchBuilder, MessageBatch
from aiokafka.producer.sender import SendProduceReqHandler
from aiokafka.structs import TopicPartition

from ingest.produce_codec import ProduceRoundRequest

log = logging.getLogger(__name__)


class DirectRounds:
    """One produce request at a time per broker, sent when asked (see the module's docstring)."""

    def __init__(self, producer: object) -> None:
        self._sender = producer._sender
        self._accumulator = producer._message_accumulator
        self._txn_manager = producer._txn_manager
        self._client = producer.client

    @classmethod
    def of(cls, producer: object) -> "DirectRounds | None":
        """Direct rounds for ``producer``, or ``None`` when it lacks the internals they use."""
        sender = getattr(producer, "_sender", None)
        accumulator = getattr(producer, "_message_accumulator", None)
        txn_manager = getattr(producer, "_txn_manager", None)
        client = getattr(producer, "client", None)
        needed = ((sender, ("_in_flight", "_muted_partitions", "_retry_backoff", "_request_timeout_ms", "_acks")),
                  (accumulator, ("_batches", "_pending_batches", "_closed", "_exception", "_batch_ttl",
                                 "_linger_time", "_waiter_future", "reenqueue")),
                  (txn_manager, ("has_pid", "sequence_number", "increment_sequence_number", "transactional_id")),
                  (client, ("_conns",)))
        if any(owner is None or not all(hasattr(owner, name) for name in names) for owner, names in needed):
            return None
        if txn_manager.transactional_id is not None:  # transactions add partitions to the transaction first
            return None
        if sender._acks == 0:  # no response to wait for
            return None
        return cls(producer)

    def can_send(self, node: object, tps: Iterable[TopicPartition]) -> bool:
        """Whether a round of ``tps`` can go to broker ``node`` now."""
        accumulator = self._accumulator
        if accumulator._closed or accumulator._exception is not None or not self._txn_manager.has_pid():
            return False
        if node is None or node == -1 or node in self._sender._in_flight:
            return False
        connection = self._client._conns.get((node, ConnectionGroup.DEFAULT))
        if connection is None or not connection.connected():
            return False
        muted = self._sender._muted_partitions  # on their way in a request of the sender's (to another broker)
        return not any(accumulator._batches.get(tp) or tp in muted for tp in tps)

    def send(self, node: int, builders: dict[TopicPartition, BatchBuilder]) -> list[asyncio.Future]:
        """Send one produce request of the closed batches ``builders`` to ``node`` (``can_send`` said yes);
        return each batch's acknowledgement, in the order of ``builders``."""
        batches = {tp: self._drained(tp, builder) for tp, builder in builders.items()}
        sender = self._sender
        sender._in_flight.add(node)
        sender._muted_partitions.update(batches)
        handler = SendProduceReqHandler(sender, batches)
        round_ = _Round(self, node, handler, batches)
        connection = self._client._conns[(node, ConnectionGroup.DEFAULT)]
        try:
            waiting = connection.send(self._request(batches))  # written to the socket now
        except KafkaError as exc:  # the connection broke: retried, as aiokafka's sender would
            round_.failed(exc)
        except Exception as exc:  # a bug: these batches fail (their records spool), the broker is released
            log.exception("produce request not sent; its records go to the spool")
            round_.failed(KafkaError(f"produce request not sent: {exc!r}"))
        else:
            waiting.close()  # aiokafka's timeout around the future (a coroutine): kept here instead, no task
            response = connection._requests[-1][2]
            round_.timer = asyncio.get_running_loop().call_later(sender._request_timeout_ms / 1000, round_.timed_out,
                                                                 connection)
            response.add_done_callback(round_.answered)
        return [batch.future for batch in batches.values()]

    def _request(self, batches: dict[TopicPartition, MessageBatch]) -> ProduceRoundRequest:
        """What ``SendProduceReqHandler.create_request`` builds, written by ``ingest.produce_codec``."""
        topics: dict[str, list[tuple[int, bytes]]] = {}
        for tp, batch in batches.items():
            topics.setdefault(tp.topic, []).append((tp.partition, batch.get_data_buffer()))
        return ProduceRoundRequest(self._sender._acks, self._sender._request_timeout_ms, list(topics.items()))

    def _drained(self, tp: TopicPartition, builder: BatchBuilder) -> MessageBatch:
        """``builder`` as the batch aiokafka's accumulator would hand its sender: sequence numbers taken,
        drained, pending until it resolves (``MessageAccumulator._append_batch`` and ``_pop_batch``)."""
        accumulator, txn_manager = self._accumulator, self._txn_manager
        batch = MessageBatch(tp, builder, accumulator._batch_ttl, accumulator._linger_time)
        sequence = txn_manager.sequence_number(tp)
        txn_manager.increment_sequence_number(tp, batch.record_count)
        batch.set_producer_state(producer_id=txn_manager.producer_id, producer_epoch=txn_manager.producer_epoch,
                                 base_sequence=sequence)
        batch.drain_ready()
        pending = accumulator._pending_batches
        pending.add(batch)
        batch.future.add_done_callback(lambda _, batch=batch: pending.discard(batch))
        return batch

    def _round_over(self, node: int, batches: dict[TopicPartition, MessageBatch]) -> None:
        """The broker and partitions are the sender's again; wake it if its accumulator holds anything."""
        sender, accumulator = self._sender, self._accumulator
        sender._in_flight.discard(node)
        sender._muted_partitions.difference_update(batches)
        if accumulator._batches and not accumulator._waiter_future.done():
            accumulator._waiter_future.set_result(None)


class _Round:
    """One produce request in flight: its response or error, handled as ``SendProduceReqHandler.do`` does."""

    __slots__ = ("rounds", "node", "handler", "batches", "timer")

    def __init__(self, rounds: DirectRounds, node: int, handler: SendProduceReqHandler,
                 batches: dict[TopicPartition, MessageBatch]) -> None:
        self.rounds, self.node, self.handler, self.batches = rounds, node, handler, batches
        self.timer: asyncio.TimerHandle | None = None

    def answered(self, response: asyncio.Future) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if response.cancelled():
            self.failed(KafkaConnectionError("produce request cancelled"))
            return
        error = response.exception()
        if error is not None:
            self.failed(error if isinstance(error, KafkaError) else KafkaConnectionError(repr(error)))
            return
        try:
            self.handler.handle_response(response.result())  # resolves, fails, or marks for a retry
        except Exception as exc:  # a response aiokafka could not make sense of: retry as after a broken connection
            log.exception("produce response not handled; its batches are retried")
            self.failed(KafkaConnectionError(f"produce response not handled: {exc!r}"))
            return
        self._retry_later()

    def timed_out(self, connection: object) -> None:
        """No response within the request timeout: close the connection (its requests fail, ``answered``)."""
        self.timer = None
        connection.close(reason=CloseReason.CONNECTION_TIMEOUT, exc=RequestTimedOutError())

    def failed(self, error: KafkaError) -> None:
        """The request got no response: retry what may be retried, fail the rest."""
        if getattr(error, "invalid_metadata", False):
            self.rounds._client.force_metadata_update()
        for batch in self.batches.values():
            if batch.future.done():
                continue
            if error.retriable:  # idempotent: retried until it succeeds, never expired
                self.handler._to_reenqueue.append(batch)
            else:
                batch.failure(exception=error)
        self._retry_later()

    def _retry_later(self) -> None:
        to_retry = [batch for batch in dict.fromkeys(self.handler._to_reenqueue) if not batch.future.done()]
        if not to_retry:
            self.rounds._round_over(self.node, self.batches)
            return
        asyncio.get_running_loop().call_later(self.handler._default_backoff, self._requeue, to_retry)

    def _requeue(self, to_retry: list[MessageBatch]) -> None:
        """Back into the accumulator, oldest first, for aiokafka's sender to retry with the same sequence."""
        accumulator = self.rounds._accumulator
        for batch in to_retry:
            if not batch.future.done():
                accumulator.reenqueue(batch)
        self.rounds._round_over(self.node, self.batches)
