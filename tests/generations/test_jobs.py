"""The worker side: claiming, redelivery and crashes never produce a second set of images."""

import io
from datetime import timedelta

import pytest
from django.utils import timezone
from PIL import Image, ImageChops

from generations import lifecycle
from generations.models import GeneratedImage, Generation
from generations.worker.jobs import run_generation

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(make_generation):
    return make_generation


def files_of(generation):
    return sorted(generation.images.values_list("file", flat=True))


def test_runs_and_completes(queued):
    generation = queued()
    run_generation(generation_id=generation.id)
    generation.refresh_from_db()
    assert generation.status == "succeeded" and generation.attempts == 1
    assert generation.images.count() == 2
    assert generation.output_tokens == 2 * 8 * 8 and generation.input_text_tokens > 0
    assert generation.started_at and generation.finished_at and generation.inference_seconds > 0


def test_redelivered_message_does_nothing_twice(queued):
    generation = queued()
    run_generation(generation_id=generation.id)
    before = files_of(generation)
    run_generation(generation_id=generation.id)
    generation.refresh_from_db()
    assert files_of(generation) == before
    assert generation.attempts == 1 and generation.status == "succeeded"


def silence(generation, seconds: float = 60) -> None:
    """The job's worker stopped answering `seconds` ago (it died): time passes without
    a heartbeat for the job it had claimed."""
    assert Generation.objects.get(pk=generation.pk).status == "running"
    Generation.objects.filter(pk=generation.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_running_job_with_a_live_heartbeat_is_left_alone(queued):
    generation = queued()
    # Another worker claimed it and is alive; the message comes again (a redelivery).
    assert lifecycle.generation_claim(generation_id=generation.id, worker="alive:1")
    run_generation(generation_id=generation.id)
    generation.refresh_from_db()
    assert generation.status == "running" and generation.images.count() == 0
    assert generation.worker == "alive:1" and generation.attempts == 1


def test_worker_died_after_saving_images(queued, monkeypatch):
    """A worker stored the images, then died before completing the record: the
    redelivered job completes it with the same images and generates nothing."""
    from generations.worker import jobs as runner

    generation = queued()
    real_complete = runner.lifecycle.generation_complete

    def die(**kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr(runner.lifecycle, "generation_complete", die)
    with pytest.raises(SystemExit):
        run_generation(generation_id=generation.id)
    monkeypatch.setattr(runner.lifecycle, "generation_complete", real_complete)
    generation.refresh_from_db()
    assert generation.status == "running" and generation.images.count() == 2
    saved = files_of(generation)

    # Its heartbeat stops; the broker redelivers the message.
    silence(generation)
    monkeypatch.setattr(
        runner.runtime.get_engine().__class__,
        "run",
        lambda *a, **k: pytest.fail("must not generate again"),
    )
    run_generation(generation_id=generation.id)
    generation.refresh_from_db()
    assert generation.status == "succeeded" and generation.attempts == 2
    assert files_of(generation) == saved


def test_worker_died_halfway_generates_only_the_missing_image(queued, monkeypatch):
    from generations.worker import jobs as runner

    reference_job = queued()  # the same request and seed, run to the end
    run_generation(generation_id=reference_job.id)
    reference = reference_job.images.get(index=1).file.read()
    generation = queued()
    real_row = runner.lifecycle.generation_image_row

    def die_at_the_second_image(*, image):
        if image.index == 1:
            raise SystemExit("worker killed after storing the first image")
        return real_row(image=image)

    monkeypatch.setattr(runner.lifecycle, "generation_image_row", die_at_the_second_image)
    with pytest.raises(SystemExit):
        run_generation(generation_id=generation.id)
    monkeypatch.setattr(runner.lifecycle, "generation_image_row", real_row)
    assert list(generation.images.values_list("index", flat=True)) == [0]
    first = generation.images.get(index=0)
    silence(generation)
    run_generation(generation_id=generation.id)
    generation.refresh_from_db()
    assert generation.status == "succeeded" and generation.attempts == 2
    assert generation.images.get(index=0).file.name == first.file.name
    regenerated = Image.open(generation.images.get(index=1).file).convert("RGB")
    original = Image.open(io.BytesIO(reference)).convert("RGB")
    # Alone rather than in a batch of two: equal up to float rounding.
    assert max(hi for _, hi in ImageChops.difference(regenerated, original).getextrema()) <= 2
    assert GeneratedImage.objects.filter(generation=generation).count() == 2


def test_images_stored_side_by_side_each_in_its_place(queued):
    """A job's images are encoded and uploaded in parallel, their rows written in index
    order, each file holding its own seed's image."""
    generation = queued(n=4)
    run_generation(generation_id=generation.id)
    generation.refresh_from_db()
    assert generation.status == "succeeded"
    rows = list(generation.images.order_by("pk").values_list("index", "seed"))
    assert rows == [(i, 42 + i) for i in range(4)]
    pixels = [Image.open(image.file).convert("RGB").tobytes() for image in generation.images.all()]
    assert len(set(pixels)) == 4  # four seeds, four pictures, none written twice


def test_an_image_that_cannot_be_stored_fails_the_job_after_the_others(queued, monkeypatch):
    from generations.worker import jobs as runner

    generation = queued(n=3)
    real_file = runner.lifecycle.generation_image_file

    def storage_refuses_the_second(**kwargs):
        if kwargs["index"] == 1:
            # A TimeoutError, as a socket's: told apart from waiting for the upload.
            raise TimeoutError("storage refused the upload")
        return real_file(**kwargs)

    monkeypatch.setattr(runner.lifecycle, "generation_image_file", storage_refuses_the_second)
    run_generation(generation_id=generation.id)
    generation.refresh_from_db()
    assert generation.status == "failed" and generation.error_code == "engine_error"
    assert "storage refused the upload" in generation.error_message
    # The others were recorded (a killed worker's redelivery would make only the
    # missing one); a failed job is not charged.
    assert sorted(generation.images.values_list("index", flat=True)) == [0, 2]
    assert generation.charged == 0


def test_an_engine_timeout_error_fails_the_job_instead_of_hanging(queued, monkeypatch):
    """A TimeoutError out of the pipeline (a socket's, say) is the job's failure, not a
    wait for the device that never ends."""
    import signal

    from generations.engine.pipelines import Engine

    def times_out(self, *args, **kwargs):
        raise TimeoutError("the model's storage did not answer")

    def hung(signum, frame):
        raise AssertionError("the worker is still waiting for the device after 60 s")

    monkeypatch.setattr(Engine, "run", times_out)
    generation = queued(n=1)
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        run_generation(generation_id=generation.id)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    generation.refresh_from_db()
    assert generation.status == "failed" and generation.error_code == "engine_error"
    assert "did not answer" in generation.error_message


# --- money under redelivery -------------------------------------------------------------


@pytest.fixture
def paid(make_generation):
    """A queued generation whose price is held, its message on a broker nobody consumes
    (the test delivers it by calling the runner, as many times as it likes)."""
    return make_generation(prompt="paid job", seed=7)


def kinds(generation) -> list[str]:
    from accounts.models import CreditEntry

    return list(
        CreditEntry.objects.filter(generation_id=generation.id)
        .order_by("pk")
        .values_list("kind", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_redelivered_message_captures_once(paid):
    from django.core.management import call_command

    run_generation(generation_id=paid.id)
    run_generation(generation_id=paid.id)
    assert kinds(paid) == ["hold", "capture"]
    paid.refresh_from_db()
    assert paid.price > 0 and paid.charged == paid.price
    call_command("reconcile_ledger")


@pytest.mark.django_db(transaction=True)
def test_worker_dying_before_completion_captures_once(paid, monkeypatch):
    from django.core.management import call_command

    from generations.worker import jobs as runner

    real_complete = runner.lifecycle.generation_complete

    def die(**kwargs):
        raise SystemExit("worker killed after saving the images")

    monkeypatch.setattr(runner.lifecycle, "generation_complete", die)
    with pytest.raises(SystemExit):
        run_generation(generation_id=paid.id)
    assert kinds(paid) == ["hold"]  # nothing settled yet; the money is still held
    monkeypatch.setattr(runner.lifecycle, "generation_complete", real_complete)
    silence(paid)
    run_generation(generation_id=paid.id)  # the redelivery, after the heartbeat stopped
    run_generation(generation_id=paid.id)  # and one more, for good measure
    assert kinds(paid) == ["hold", "capture"]
    call_command("reconcile_ledger")
