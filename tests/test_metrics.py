"""Prometheus metrics of the web process (and, embedded, of its worker threads)."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def metrics(client, settings):
    settings.METRICS_TOKEN = "m3trics"
    return lambda: client.get("/metrics", HTTP_AUTHORIZATION="Bearer m3trics").content.decode()


def test_metrics_count_requests_and_images(api, metrics):
    assert (
        api.post(
            "/v1/images/generations", {"prompt": "m", "n": 2, "size": "64x64"}, format="json"
        ).status_code
        == 200
    )
    api.get("/v1/images/generations/gen_nope")
    text = metrics()
    assert (
        'imagehub_http_requests_total{method="POST",route="v1/images/generations",status="200"}'
    ) in text
    # Routes, not raw paths: an id never becomes a label.
    assert 'route="v1/images/generations/<str:pk>",status="404"' in text
    assert "gen_nope" not in text
    assert 'imagehub_images_total{model="demo-sd"}' in text
    assert 'imagehub_jobs_total{code="",model="demo-sd",status="succeeded"}' in text
    assert "imagehub_inference_seconds_bucket" in text and "imagehub_batch_images_bucket" in text


def test_metrics_token(client, settings):
    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_metrics_are_private_by_default(client, settings):
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 404
    assert b"imagehub_http_requests_total" not in response.content


def test_made_up_methods_share_one_label_value(client, metrics):
    for method in ("BREW", "FOO1", "XYZZY"):
        client.generic(method, "/v1/models")
    text = metrics()
    assert 'method="other"' in text
    for method in ("BREW", "FOO1", "XYZZY"):
        assert method not in text
