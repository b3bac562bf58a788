"""Counting a job's prompt tokens (in the job's thread) while the device runs the next
batch (in the batcher's thread) must not disturb the batch.

A tokenizer keeps its truncation and padding settings in state that each call sets.
Counted with the pipeline's own tokenizer, an untruncated, unpadded count landed between
the batch's prompt encoding (padded to 77) and its negative prompt's (then 2 tokens), and
the whole batch failed: "Sizes of tensors must match ... Expected size 2 but got size 77"
(found by make chaos)."""

from __future__ import annotations

import threading

from generations.catalog import get_model
from generations.engine import RunRequest
from generations.worker.runtime import get_engine


def test_counting_tokens_during_a_batch_never_fails_it():
    engine = get_engine()
    spec = get_model("demo-sd")
    request = RunRequest(
        spec=spec,
        prompt="a lighthouse",
        negative_prompt="",
        width=64,
        height=64,
        steps=1,
        guidance_scale=5.0,
        seeds=[1, 2],
    )
    counted = engine.text_tokens(spec, ["a lighthouse at dusk"])
    stop = threading.Event()
    counts: set[int] = set()

    def count() -> None:
        while not stop.is_set():
            counts.add(engine.text_tokens(spec, ["a lighthouse at dusk"]))

    counter = threading.Thread(target=count, daemon=True)
    counter.start()
    try:
        for _ in range(25):  # with the shared tokenizer, most runs failed within 5 calls
            images, _ = engine.run_batch([request, request])
            assert [len(each) for each in images] == [2, 2]
    finally:
        stop.set()
        counter.join(10)
    assert counts == {counted}
