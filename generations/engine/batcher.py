"""Dynamic batching: one batcher thread per device runs the pipeline calls of every
worker thread of the process (all of them, batching on or off: the device has one
caller), putting compatible text-to-image jobs into one call when batching is on.

A worker thread claims its job as before, hands the batcher a `RunRequest` and waits on
its future; then it stores the images and completes the record itself (money moves in
services, once per generation, as without batching).

How a batch forms: the oldest waiting job leads. Jobs for the same model, size, steps,
guidance (and all with or all without a negative prompt) join it, oldest first, up to
the model's `max_batch_images`; the batcher waits up to `batch_wait_ms` after
the leader arrived for more. Under load jobs queue while a batch runs, so the next batch
forms without waiting. Sizes above the model's `max_batch_pixels` run alone, and so do
edits, variations and streaming requests.

Cancel: a job canceled before its batch starts leaves it. A running batch stops only
when all its jobs asked to stop; otherwise it finishes and the jobs that asked get
Canceled instead of their images (the worker marks them canceled, the hold comes back).

Out of memory: a batch that runs out of device memory is split in halves and each half
retried; a job that runs out of memory alone fails with `out_of_memory`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, wait
from dataclasses import dataclass, field

from generations.engine.pipelines import Engine
from generations.engine.types import Canceled, OutOfMemory, RunRequest, RunResult

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    request: RunRequest
    future: Future = field(default_factory=Future)
    # Set by the waiting worker thread: its client canceled, or it gave up (time limit).
    cancel: threading.Event = field(default_factory=threading.Event)
    arrived: float = field(default_factory=time.monotonic)

    @property
    def images(self) -> int:
        return self.request.images


@dataclass(frozen=True)
class BatchRecord:
    model: str
    jobs: int
    images: int
    width: int
    height: int
    steps: int
    seconds: float


class Batcher:
    def __init__(self, engine: Engine, *, batch_wait_ms: float, batching: bool = True):
        self.engine = engine
        self.batch_wait_ms = batch_wait_ms
        # Off: every job runs alone, still in this thread (the device's one caller).
        self.batching = batching
        self._queue: queue.Queue[Job] = queue.Queue()
        self._pending: list[Job] = []  # taken off the queue, not yet run (executor thread)
        self._running = threading.Event()
        self._running.set()
        # Jobs claimed by worker threads and on their way here: only they are worth
        # waiting for (a lone request must not pay IMAGEHUB_BATCH_WAIT_MS).
        self._incoming = 0
        self._incoming_lock = threading.Lock()
        self._announced = threading.local()
        # The latest pipeline calls, newest last (for operators and tests).
        self.history: deque[BatchRecord] = deque(maxlen=256)
        self._thread = threading.Thread(
            target=self._loop, name=f"imagehub-batcher-{engine.device}", daemon=True
        )
        self._thread.start()

    @contextlib.contextmanager
    def arriving(self):
        """Around the work between claiming a job and submitting it (if it ever is)."""
        with self._incoming_lock:
            self._incoming += 1
        self._announced.active = True
        try:
            yield
        finally:
            self._arrived()

    def _arrived(self) -> None:
        if getattr(self._announced, "active", False):
            self._announced.active = False
            with self._incoming_lock:
                self._incoming -= 1

    def submit(self, request: RunRequest) -> Job:
        self._arrived()
        job = Job(request)
        self._queue.put(job)
        return job

    def waiting(self) -> int:
        """Jobs submitted and not started yet."""
        return self._queue.qsize() + len(self._pending)

    def pause(self) -> None:
        """Start no new batch until resume() (jobs keep queuing meanwhile)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    # --- the batcher thread ----------------------------------------------------------
    def _loop(self) -> None:
        while True:
            try:
                self._step()
            except Exception:  # noqa: BLE001 - the executor must outlive any one batch
                logger.exception("batcher step failed")

    def _step(self) -> None:
        if not self._pending:
            self._pending.append(self._queue.get())
        self._running.wait()
        self._take_queued()
        head = self._pending[0]
        batch = self._gather(head)
        cap = head.request.spec.max_batch_images
        shares = self.batching and head.request.may_share_a_batch
        while shares and sum(job.images for job in batch) < cap:
            remaining = head.arrived + self.batch_wait_ms / 1000 - time.monotonic()
            if remaining <= 0 or (self._incoming <= 0 and self._queue.empty()):
                break
            try:
                self._pending.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
            batch = self._gather(head)
        for job in batch:
            self._pending.remove(job)
        live = []
        for job in batch:
            if job.cancel.is_set():
                job.future.set_exception(Canceled())
            else:
                live.append(job)
        if live:
            self._execute(live)

    def _take_queued(self) -> None:
        while True:
            try:
                self._pending.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _gather(self, head: Job) -> list[Job]:
        """The leader and the compatible jobs behind it, oldest first, within the cap."""
        if not (self.batching and head.request.may_share_a_batch):
            return [head]
        batch, images, key = [head], head.images, head.request.batch_key()
        cap = head.request.spec.max_batch_images
        for job in self._pending[1:]:
            if (
                job.request.may_share_a_batch
                and job.request.batch_key() == key
                and images + job.images <= cap
            ):
                batch.append(job)
                images += job.images
        return batch

    def _execute(self, jobs: list[Job]) -> None:
        first = jobs[0]
        started = time.monotonic()
        try:
            if len(jobs) == 1:
                request = dataclasses.replace(first.request, should_stop=first.cancel.is_set)
                result = self.engine.run(request)
                images, seconds = [result.images], result.inference_seconds
            else:
                images, seconds = self.engine.run_batch(
                    [job.request for job in jobs],
                    should_stop=lambda: all(job.cancel.is_set() for job in jobs),
                )
        except OutOfMemory as exc:
            if len(jobs) == 1:
                first.future.set_exception(exc)
                return
            half = len(jobs) // 2
            logger.warning(
                "batch model=%s jobs=%d ran out of memory; retrying as %d + %d jobs",
                first.request.spec.id,
                len(jobs),
                half,
                len(jobs) - half,
            )
            self._execute(jobs[:half])
            self._execute(jobs[half:])
            return
        except Exception as exc:  # noqa: BLE001 - Canceled or an engine error: every job's
            for job in jobs:
                job.future.set_exception(exc)
            return
        record = BatchRecord(
            model=first.request.spec.id,
            jobs=len(jobs),
            images=sum(job.images for job in jobs),
            width=first.request.width,
            height=first.request.height,
            steps=first.request.steps,
            seconds=seconds,
        )
        self.history.append(record)
        logger.info(
            "batch model=%s images=%d jobs=%d size=%dx%d steps=%d in %.2fs",
            record.model,
            record.images,
            record.jobs,
            record.width,
            record.height,
            record.steps,
            record.seconds,
        )
        for job, job_images in zip(jobs, images, strict=True):
            if job.cancel.is_set():
                job.future.set_exception(Canceled())  # asked to stop while the batch ran
            else:
                job.future.set_result(
                    RunResult(
                        images=job_images,
                        inference_seconds=seconds,
                        device_wait_seconds=max(0.0, started - job.arrived),
                    )
                )


_lock = threading.Lock()


def batcher_for(engine: Engine, *, batch_wait_ms: float) -> Batcher:
    """The device's batcher, started on first use."""
    if engine.batcher is None:
        with _lock:
            if engine.batcher is None:
                engine.batcher = Batcher(engine, batch_wait_ms=batch_wait_ms)
    return engine.batcher


def run_batched(batcher: Batcher, request: RunRequest) -> RunResult:
    """Run one job's images through the batcher (the calling thread waits for them);
    `request.should_stop` is asked while it waits."""
    job = batcher.submit(request)
    try:
        # Short waits keep this thread responsive to Dramatiq's time limit, which
        # interrupts Python code only. (Not result(timeout=): a TimeoutError the engine
        # raised would read as a wait not over yet, forever.)
        while not wait([job.future], timeout=0.05).done:
            if request.should_stop is not None and request.should_stop():
                job.cancel.set()
        return job.future.result()
    except BaseException:
        job.cancel.set()  # nobody waits for it any more: skip it or drop its images
        raise
