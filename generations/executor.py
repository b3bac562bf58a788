"""Dynamic batching: one executor thread per device runs the pipeline calls of every
worker thread of the process, putting compatible text-to-image jobs into one call.

A worker thread claims its job as before, hands the executor a `Job` and waits on its
future; then it stores the images and completes the record itself (money moves in
services, once per generation, as without batching).

How a batch forms: the oldest waiting job leads. Jobs for the same model, size, steps,
guidance (and all with or all without a negative prompt) join it, oldest first, up to
the model's `max_batch_images`; the executor waits up to IMAGEHUB_BATCH_WAIT_MS after
the leader arrived for more. Under load jobs queue while a batch runs, so the next batch
forms without waiting. Sizes above the model's `max_batch_pixels` run alone; edits,
variations and streaming requests never come here (the runner runs them directly under
the same device lock).

Cancel: a job canceled before its batch starts leaves it. A running batch stops only
when all its jobs asked to stop; otherwise it finishes and the jobs that asked get
Canceled instead of their images (the runner marks them canceled, the hold comes back).

Out of memory: a batch that runs out of device memory is split in halves and each half
retried; a job that runs out of memory alone fails with `out_of_memory`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from django.conf import settings

from generations.catalog import ModelSpec
from generations.engine import Canceled, Engine, OutOfMemory, RunResult

logger = logging.getLogger("generations.engine")

# What a job that may share a batch is made of; anything else (an input image, previews)
# makes it run alone.
BATCH_PARAMS = {
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "steps",
    "guidance_scale",
    "seeds",
}


@dataclass(eq=False)
class Job:
    spec: ModelSpec
    prompt: str
    negative_prompt: str
    width: int
    height: int
    steps: int
    guidance_scale: float
    seeds: list[int]
    future: Future = field(default_factory=Future)
    # Set by the waiting worker thread: its client canceled, or it gave up (time limit).
    cancel: threading.Event = field(default_factory=threading.Event)
    arrived: float = field(default_factory=time.monotonic)

    @property
    def images(self) -> int:
        return len(self.seeds)

    @property
    def batchable(self) -> bool:
        return (
            self.width * self.height <= self.spec.max_batch_pixels
            and self.spec.max_batch_images > 1
        )

    def key(self) -> tuple:
        with_negative = bool(self.negative_prompt) and self.spec.supports_negative_prompt
        return (
            self.spec.id,
            self.width,
            self.height,
            self.steps,
            self.guidance_scale,
            with_negative,
        )


@dataclass(frozen=True)
class BatchRecord:
    model: str
    jobs: int
    images: int
    width: int
    height: int
    steps: int
    seconds: float


class Executor:
    def __init__(self, engine: Engine):
        self.engine = engine
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
            target=self._loop, name=f"imagehub-executor-{engine.device}", daemon=True
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

    def submit(self, job: Job) -> Future:
        self._arrived()
        self._queue.put(job)
        return job.future

    def waiting(self) -> int:
        """Jobs submitted and not started yet."""
        return self._queue.qsize() + len(self._pending)

    def pause(self) -> None:
        """Start no new batch until resume() (jobs keep queuing meanwhile)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    # --- the executor thread ----------------------------------------------------------
    def _loop(self) -> None:
        while True:
            try:
                self._step()
            except Exception:  # noqa: BLE001 - the executor must outlive any one batch
                logger.exception("executor step failed")

    def _step(self) -> None:
        if not self._pending:
            self._pending.append(self._queue.get())
        self._running.wait()
        self._take_queued()
        head = self._pending[0]
        batch = self._gather(head)
        while head.batchable and sum(job.images for job in batch) < head.spec.max_batch_images:
            remaining = head.arrived + settings.BATCH_WAIT_MS / 1000 - time.monotonic()
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
        if not head.batchable:
            return [head]
        batch, images, key = [head], head.images, head.key()
        for job in self._pending[1:]:
            if (
                job.batchable
                and job.key() == key
                and images + job.images <= head.spec.max_batch_images
            ):
                batch.append(job)
                images += job.images
        return batch

    def _execute(self, jobs: list[Job]) -> None:
        first = jobs[0]
        started = time.monotonic()
        try:
            if len(jobs) == 1:
                result = self.engine.run(
                    first.spec,
                    prompt=first.prompt,
                    negative_prompt=first.negative_prompt,
                    width=first.width,
                    height=first.height,
                    steps=first.steps,
                    guidance_scale=first.guidance_scale,
                    seeds=first.seeds,
                    should_stop=first.cancel.is_set,
                )
                images, seconds = [result.images], result.inference_seconds
            else:
                images, seconds = self.engine.run_batch(
                    first.spec,
                    requests=[(job.prompt, job.negative_prompt, job.seeds) for job in jobs],
                    width=first.width,
                    height=first.height,
                    steps=first.steps,
                    guidance_scale=first.guidance_scale,
                    should_stop=lambda: all(job.cancel.is_set() for job in jobs),
                )
        except OutOfMemory as exc:
            if len(jobs) == 1:
                first.future.set_exception(exc)
                return
            half = len(jobs) // 2
            logger.warning(
                "batch model=%s jobs=%d ran out of memory; retrying as %d + %d jobs",
                first.spec.id,
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
            model=first.spec.id,
            jobs=len(jobs),
            images=sum(job.images for job in jobs),
            width=first.width,
            height=first.height,
            steps=first.steps,
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


def executor_for(engine: Engine) -> Executor:
    if engine.executor is None:
        with _lock:
            if engine.executor is None:
                engine.executor = Executor(engine)
    return engine.executor


def run_job(engine: Engine, spec: ModelSpec, *, should_stop, **params) -> RunResult:
    """Run one job's images: through the device's executor when it may share a batch,
    directly (under the same device lock) otherwise."""
    if not settings.BATCHING or set(params) - BATCH_PARAMS:
        return engine.run(spec, should_stop=should_stop, **params)
    job = Job(spec=spec, **params)
    future = executor_for(engine).submit(job)
    try:
        while True:
            try:
                # Short waits keep this thread responsive to Dramatiq's time limit, which
                # interrupts Python code only.
                return future.result(timeout=0.05)
            except TimeoutError:
                if should_stop():
                    job.cancel.set()
    except BaseException:
        job.cancel.set()  # nobody waits for it any more: skip it or drop its images
        raise
