"""Playing the worker by hand: tests that hold the broker (the `stub_broker` fixture)
finish jobs through the same services a worker calls, so every state they build is one
production reaches."""

from __future__ import annotations

from generations import catalog, lifecycle
from generations.models import Generation
from tests.imagefiles import png_bytes


def finish_by_hand(message_id: str, worker: str = "w:1"):
    """Play the worker for one message, through the services a worker calls: claim the
    job the message (and fair share) gives, store one PNG per image, complete it (which
    captures the hold). Returns the finished generation."""
    claimed = lifecycle.generation_claim(generation_id=message_id, worker=worker)
    assert claimed is not None, f"no job to claim for {message_id}"
    generation = Generation.objects.get(pk=claimed)
    for index in range(generation.n):
        lifecycle.generation_save_image(
            generation=generation,
            index=index,
            seed=generation.seed + index,
            data=png_bytes((generation.width, generation.height)),
            content_type="image/png",
            extension="png",
            width=generation.width,
            height=generation.height,
        )
    spec = catalog.get_model(generation.model)
    lifecycle.generation_complete(
        generation=generation,
        input_text_tokens=1,
        output_tokens=spec.output_tokens(generation.width, generation.height) * generation.n,
        inference_seconds=0.01,
    )
    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED
    return generation
