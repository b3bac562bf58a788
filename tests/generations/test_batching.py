"""Dynamic batching: requests waiting together share one pipeline call, and each image is
the one its request would get alone."""

from __future__ import annotations

import time

import pytest
import torch

from generations.catalog import get_model
from generations.worker import runtime
from generations.worker.runtime import get_engine
from tests.generations.test_api import decode, nearly_equal

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"


@pytest.fixture
def batcher(settings):
    settings.BATCHING = True
    settings.BATCH_WAIT_MS = 10
    batcher = runtime.batcher()
    yield batcher
    batcher.resume()


def wait_for(condition, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def submit_held(api, batcher, bodies: list[dict]) -> list[str]:
    """Queue the requests while the batcher is paused, in this order."""
    batcher.pause()
    ids = []
    for body in bodies:
        before = batcher.waiting()
        response = api.post(URL, body, format="json", HTTP_PREFER="respond-async")
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
        wait_for(lambda before=before: batcher.waiting() > before)
    return ids


def finished(api, generation_id: str) -> dict:
    result = {}

    def done():
        result.update(api.get(f"{URL}/{generation_id}").json())
        return result["status"] in ("succeeded", "failed", "canceled")

    wait_for(done)
    return result


@pytest.mark.parametrize(("model", "size"), [("demo-sd", "128x128"), ("demo-flux", "128x128")])
def test_a_batched_image_equals_the_same_request_alone(api, batcher, settings, model, size):
    bodies = [
        {"model": model, "prompt": "a red fox", "n": 1, "seed": 11, "size": size},
        {"model": model, "prompt": "a blue whale", "n": 2, "seed": 500, "size": size},
        {"model": model, "prompt": "green hills at dawn", "n": 3, "seed": 9, "size": size},
    ]
    if model == "demo-sd":
        for body in bodies:
            body["negative_prompt"] = f"not {body['prompt']}"
    calls = len(batcher.history)
    ids = submit_held(api, batcher, bodies)
    batcher.resume()
    batched = [finished(api, generation_id) for generation_id in ids]
    assert [body["status"] for body in batched] == ["succeeded"] * 3
    # One pipeline call carried all six images.
    records = list(batcher.history)[calls:]
    assert [(r.model, r.jobs, r.images) for r in records] == [(model, 3, 6)]
    for body in batched:
        assert body["timings"]["inference"] == pytest.approx(records[0].seconds, abs=1e-3)

    settings.BATCHING = False
    for body, result in zip(bodies, batched, strict=True):
        alone = api.post(URL, body, format="json").json()
        assert [item["seed"] for item in alone["data"]] == [item["seed"] for item in result["data"]]
        assert alone["usage"] == result["usage"]
        for single, together in zip(alone["data"], result["data"], strict=True):
            assert nearly_equal(single, together)
        # ... and not the picture of another request in the batch.
        assert not nearly_equal(alone["data"][0], batched[(bodies.index(body) + 1) % 3]["data"][0])


def test_different_sizes_never_share_a_batch(api, batcher):
    calls = len(batcher.history)
    bodies = [
        {"prompt": "a", "size": "128x128", "seed": 1},
        {"prompt": "b", "size": "64x64", "seed": 2},
        {"prompt": "c", "size": "128x128", "seed": 3},
        {"prompt": "d", "size": "64x64", "seed": 4, "num_inference_steps": 3},
        {"prompt": "e", "size": "64x64", "seed": 5},
    ]
    ids = submit_held(api, batcher, bodies)
    batcher.resume()
    results = [finished(api, generation_id) for generation_id in ids]
    assert {body["status"] for body in results} == {"succeeded"}
    assert [decode(body["data"][0]).size for body in results] == [
        (128, 128),
        (64, 64),
        (128, 128),
        (64, 64),
        (64, 64),
    ]
    records = sorted((r.width, r.steps, r.jobs) for r in list(batcher.history)[calls:])
    # The oldest job leads; steps differ for "d", so it runs alone.
    assert records == [(64, 3, 1), (64, 4, 2), (128, 4, 2)]


def test_sizes_above_the_batch_threshold_run_alone(api, batcher):
    calls = len(batcher.history)
    body = {"prompt": "big", "size": "512x576", "num_inference_steps": 1}
    ids = submit_held(api, batcher, [{**body, "seed": 1}, {**body, "seed": 2}])
    batcher.resume()
    assert [finished(api, generation_id)["status"] for generation_id in ids] == ["succeeded"] * 2
    assert [(r.jobs, r.images) for r in list(batcher.history)[calls:]] == [(1, 1), (1, 1)]


def test_a_batch_out_of_memory_splits_and_only_the_job_too_big_alone_fails(
    api, tenant, batcher, monkeypatch
):
    """Pretend the device holds two images per call: the batch of 1+1+3+1 images splits
    into [1+1] (fits) and [3+1], which splits into [3] (fails alone) and [1] (fits)."""
    pipe_class = type(get_engine().pipeline(get_model("demo-sd")))
    real_call = pipe_class.__call__

    def small_device(self, *args, **kwargs):
        if len(kwargs["generator"]) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (pretend)")
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(pipe_class, "__call__", small_device)
    calls = len(batcher.history)
    bodies = [
        {"prompt": "one", "size": "64x64", "n": 1, "seed": 1},
        {"prompt": "two", "size": "64x64", "n": 1, "seed": 2},
        {"prompt": "three", "size": "64x64", "n": 3, "seed": 3},
        {"prompt": "four", "size": "64x64", "n": 1, "seed": 4},
    ]
    ids = submit_held(api, batcher, bodies)
    batcher.resume()
    results = [finished(api, generation_id) for generation_id in ids]
    assert [body["status"] for body in results] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert results[2]["error"]["code"] == "out_of_memory"
    assert [(r.jobs, r.images) for r in list(batcher.history)[calls:]] == [(2, 2), (1, 1)]
    from accounts.models import Organization

    org = Organization.objects.get(pk=tenant.org.pk)
    assert org.credits_held == 0  # the failed job's hold came back, the others were captured


def test_cancel_before_the_batch_starts_leaves_the_batch(api, batcher):
    calls = len(batcher.history)
    body = {"prompt": "x", "size": "64x64"}
    ids = submit_held(api, batcher, [{**body, "seed": s} for s in (1, 2, 3)])
    response = api.post(f"{URL}/{ids[1]}/cancel")
    assert response.json()["cancel_requested"] is True
    time.sleep(0.5)  # the waiting worker thread notices the request
    batcher.resume()
    results = [finished(api, generation_id) for generation_id in ids]
    assert [body["status"] for body in results] == ["succeeded", "canceled", "succeeded"]
    assert [(r.jobs, r.images) for r in list(batcher.history)[calls:]] == [(2, 2)]


def held_jobs(batcher, count: int):
    from generations.engine import RunRequest

    spec = get_model("demo-sd")
    batcher.pause()
    jobs = []
    for k in range(count):
        request = RunRequest(
            spec=spec,
            prompt=f"job {k}",
            negative_prompt="",
            width=64,
            height=64,
            steps=3,
            guidance_scale=5.0,
            seeds=[k],
        )
        jobs.append(batcher.submit(request))
    wait_for(lambda: batcher.waiting() == count)
    return jobs


def test_cancel_of_some_jobs_while_the_batch_runs_drops_only_their_images(batcher, monkeypatch):
    from generations.engine import Canceled

    jobs = held_jobs(batcher, 3)
    pipe_class = type(get_engine().pipeline(get_model("demo-sd")))
    real_call = pipe_class.__call__

    def cancel_second_meanwhile(self, *args, **kwargs):
        jobs[1].cancel.set()
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(pipe_class, "__call__", cancel_second_meanwhile)
    calls = len(batcher.history)
    batcher.resume()
    assert len(jobs[0].future.result(timeout=60).images) == 1
    with pytest.raises(Canceled):
        jobs[1].future.result(timeout=60)
    assert len(jobs[2].future.result(timeout=60).images) == 1
    assert [(r.jobs, r.images) for r in list(batcher.history)[calls:]] == [(3, 3)]


def test_a_batch_whose_jobs_all_cancel_stops_between_steps(batcher, monkeypatch):
    from generations.engine import Canceled

    jobs = held_jobs(batcher, 2)
    pipe_class = type(get_engine().pipeline(get_model("demo-sd")))
    real_call = pipe_class.__call__
    steps_run = []

    def cancel_all_after_first_step(self, *args, **kwargs):
        stop = kwargs["callback_on_step_end"]

        def on_step(pipe, step, timestep, callback_kwargs):
            steps_run.append(step)
            for job in jobs:
                job.cancel.set()
            return stop(pipe, step, timestep, callback_kwargs)

        return real_call(self, *args, **{**kwargs, "callback_on_step_end": on_step})

    monkeypatch.setattr(pipe_class, "__call__", cancel_all_after_first_step)
    batcher.resume()
    for job in jobs:
        with pytest.raises(Canceled):
            job.future.result(timeout=60)
    assert steps_run == [0]
