"""Where a request's gateway time goes: the services of one generation, timed one by one.

    .venv/bin/python -m tests.bench_services [--runs 20]

Runs against a scratch PostgreSQL database (created and dropped) with the demo model and
prints the median milliseconds of each step a 256x256 request takes outside the pipeline.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
import uuid

ADMIN_DB = "postgresql://postgres@127.0.0.1/postgres"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    import psycopg

    name = f"imagehub_profile_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    os.environ["DJANGO_SETTINGS_MODULE"] = "imagehub.settings"
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
    try:
        _measure(args.runs)
    finally:
        from django.db import connections

        connections.close_all()
        for connection in connections.all():
            if getattr(connection, "pool", None):
                connection.close_pool()
        with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _measure(runs: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.ledger import credits_top_up
    from accounts.services import api_key_create, organization_create, user_get_or_create
    from generations import lifecycle, services
    from generations.catalog import get_model
    from generations.engine import RunRequest
    from generations.formats import encode_image
    from generations.models import Generation
    from generations.types import GenerationRequest
    from generations.worker import embedded
    from generations.worker.runtime import get_engine

    user, _ = user_get_or_create(email="profile@example.com")
    org = organization_create(name="profile", owner=user)
    credits_top_up(organization=org, amount=10**12)
    key, _ = api_key_create(organization=org, created_by=user)
    spec, engine = get_model("demo-sd"), get_engine()
    image = engine.run(
        RunRequest(
            spec=spec,
            prompt="x",
            negative_prompt="",
            width=256,
            height=256,
            steps=4,
            guidance_scale=5.0,
            seeds=[1],
        )
    ).images[0]
    request = GenerationRequest(
        spec=spec,
        prompt="x",
        negative_prompt="",
        n=1,
        width=256,
        height=256,
        steps=4,
        guidance_scale=5.0,
        quality="auto",
        response_format="b64_json",
        output_format="png",
        seed=1,
    )
    steps: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def timed(label: str):
        started = time.perf_counter()
        yield
        steps.setdefault(label, []).append(time.perf_counter() - started)

    # No worker consumes the messages: we play the worker ourselves.
    no_worker = contextlib.ExitStack()
    no_worker.enter_context(embedded.paused())
    for _ in range(runs):
        with timed("create + hold"):
            generation = services.generation_create(
                order=request, organization=org, api_key=key, user=user
            )
        with timed("claim"):
            lifecycle.generation_claim(generation_id=generation.id, worker="profile")
        with timed("load the row"):
            generation = Generation.objects.get(pk=generation.id)
        with timed("PNG encode"):
            data, content_type = encode_image(image, "png", None)
        with timed("save file + row"):
            lifecycle.generation_save_image(
                generation=generation,
                index=0,
                seed=1,
                data=data,
                content_type=content_type,
                extension="png",
                width=256,
                height=256,
            )
        with timed("count tokens"):
            engine.text_tokens(spec, ["x", ""])
        with timed("complete + settle + rollup"):
            lifecycle.generation_complete(
                generation=generation,
                input_text_tokens=3,
                output_tokens=1024,
                inference_seconds=0.1,
            )
    no_worker.close()
    for label, values in steps.items():
        print(f"{label:28s} {statistics.median(values) * 1000:6.2f} ms")


if __name__ == "__main__":
    main()
