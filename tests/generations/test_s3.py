"""STORAGE=s3: images go to an S3-compatible server and `url` is a presigned link.

Runs against moto's real HTTP S3 server on loopback, through django-storages and boto3
exactly as against AWS or MinIO.
"""

from __future__ import annotations

import io
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer
from PIL import Image

pytestmark = pytest.mark.django_db(transaction=True)

BUCKET = "imagehub-test"


@pytest.fixture(scope="module")
def s3_endpoint():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def s3_storage(settings, s3_endpoint):
    settings.STORAGES = {
        **settings.STORAGES,
        "images": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": s3_endpoint,
                "region_name": "us-east-1",
                "access_key": "test",
                "secret_key": "test",
                "location": "images",
                "querystring_auth": True,
                "querystring_expire": 3600,
                "signature_version": "s3v4",
                "file_overwrite": False,
            },
        },
    }
    return s3_endpoint


def test_images_are_stored_in_s3_and_served_by_presigned_url(api, s3_storage):
    response = api.post(
        "/v1/images/generations",
        {"prompt": "to the bucket", "response_format": "url", "n": 2},
        format="json",
    )
    assert response.status_code == 200, response.content
    urls = [item["url"] for item in response.json()["data"]]
    for url in urls:
        parsed = urlparse(url)
        assert url.startswith(s3_storage) and parsed.path.startswith(f"/{BUCKET}/images/")
        query = parse_qs(parsed.query)
        assert query["X-Amz-Expires"] == ["3600"] and "X-Amz-Signature" in query
        fetched = requests.get(url, timeout=10)
        assert fetched.status_code == 200
        assert Image.open(io.BytesIO(fetched.content)).size == (256, 256)
    listed = boto3.client(
        "s3",
        endpoint_url=s3_storage,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).list_objects_v2(Bucket=BUCKET, Prefix="images/")
    assert len(listed["Contents"]) >= 2


def test_b64_json_reads_back_from_s3(api, s3_storage):
    response = api.post("/v1/images/generations", {"prompt": "b64 from s3"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["data"][0]["b64_json"]
