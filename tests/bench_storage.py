"""A multi-image answer on S3: encoding, upload and read-back side by side or one after
another.

    .venv/bin/python -m tests.bench_storage [--n 4] [--rtt-ms 30] [--out BENCHMARKS.md]

STORAGE=s3 against moto's S3 server on loopback, through django-storages and boto3 as in
production, with `--rtt-ms` added to every S3 request (the network between the workers
and the bucket; loopback has none). For n 1024² images (the emulated device's, as hard
to encode as a diffusion model's): the worker's side (PNG encoding + upload: what
generations/worker/jobs.py `_store` does before writing the rows) and the web's (read
back + base64 for `b64_json`: generations/presenters.py `image_items`), each timed one
image after another (as before) and side by side (the pools those modules use now).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from tests.benchfile import publish

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "imagehub-bench"


def _moto() -> tuple[object, str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4, help="images in the answer")
    parser.add_argument("--rtt-ms", type=float, default=30.0, help="added to each S3 request")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    server, endpoint = _moto()
    os.environ.update(
        DJANGO_SETTINGS_MODULE="imagehub.settings",
        STORAGE="s3",
        AWS_STORAGE_BUCKET_NAME=BUCKET,
        AWS_S3_ENDPOINT_URL=endpoint,
        AWS_S3_REGION_NAME="us-east-1",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
    )
    sys.path.insert(0, str(ROOT))
    import boto3
    import django

    django.setup()
    from django.utils import timezone
    from PIL import Image
    from storages.backends.s3 import S3Storage

    from generations import lifecycle, presenters
    from generations.engine.pipelines import _emulated_base
    from generations.formats import encode_image
    from generations.models import GeneratedImage, Generation
    from generations.worker import jobs

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    ).create_bucket(Bucket=BUCKET)
    rtt = args.rtt_ms / 1000
    for name in ("_save", "_open"):
        real = getattr(S3Storage, name)

        def delayed(self, *a, _real=real, **k):
            time.sleep(rtt)  # one request's round trip to the bucket
            return _real(self, *a, **k)

        setattr(S3Storage, name, delayed)

    import numpy as np

    base = _emulated_base(1024, 1024)
    images = [Image.fromarray(np.roll(base, 7919 * i)) for i in range(args.n)]
    generation = Generation(id="gen_bench", organization_id=1, created_at=timezone.now())
    generation.output_format, generation.output_compression = "png", None

    def upload(index: int, image):
        data, content_type = encode_image(image, "png", None)
        return lifecycle.generation_image_file(
            generation=generation,
            index=index,
            seed=index,
            data=data,
            content_type=content_type,
            extension="png",
            width=image.width,
            height=image.height,
        )

    names = [upload(i, image).file.name for i, image in enumerate(images)]

    def read(image):
        return presenters.Base64Text.of(presenters._read(image))

    def store_all(pool):
        return list(pool.map(upload, range(args.n), images))

    def read_all(pool):
        # As the web finds them: rows just read from the database, no file opened yet.
        rows = [GeneratedImage(generation=generation, index=i, file=n) for i, n in enumerate(names)]
        return list(pool.map(read, rows))

    one_by_one = ThreadPoolExecutor(max_workers=1)
    cases = [
        ("worker: encode + upload", one_by_one, store_all),
        ("worker: encode + upload", jobs._store_pool, store_all),
        ("web: read back + base64", one_by_one, read_all),
        ("web: read back + base64", presenters._readers, read_all),
    ]
    timings = {}
    for what, pool, run in tqdm(cases, desc="cases"):
        run(pool)  # warm
        samples = []
        for _ in range(args.runs):
            started = time.perf_counter()
            run(pool)
            samples.append(time.perf_counter() - started)
        timings[(what, pool is one_by_one)] = statistics.median(samples)
    server.stop()
    lines = [
        "## Multi-image answers on S3 (make bench-storage)",
        "",
        f"Measured {dt.date.today().isoformat()} on {os.cpu_count()} CPU cores with "
        f"`make bench-storage` (`.venv/bin/python -m tests.bench_storage --n {args.n} "
        f"--rtt-ms {args.rtt_ms:g}`): {args.n} images of 1024² (PNG, about 2.4 MB each) "
        "through django-storages and boto3 to moto's S3 server on loopback, "
        f"{args.rtt_ms:g} ms added to every S3 request for the network to a bucket. "
        "Median of "
        f"{args.runs} runs.",
        "",
        "| step | one after another (ms) | side by side (ms) | gain |",
        "|---|---|---|---|",
    ]
    for what in ("worker: encode + upload", "web: read back + base64"):
        before, after = timings[(what, True)], timings[(what, False)]
        lines.append(
            f"| {what} | {before * 1000:.0f} | {after * 1000:.0f} | {before / after:.1f}× |"
        )
    lines += [
        "",
        "The worker encodes and uploads a job's images in a pool (generations/worker/jobs.py "
        "`_store`) and then writes their rows in index order; the web reads the files of a "
        "`b64_json` answer back in a pool (generations/presenters.py). Both were one after "
        "another before. Without the added round trip (files on local disk, or moto alone) "
        "the gain is what two cores give to the PNG encoder, which already deflates "
        "in parallel bands.",
        "",
    ]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
