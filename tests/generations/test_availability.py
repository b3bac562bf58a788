"""Models this server cannot load: found by the workers, marked in /v1/models and the key
form, refused up front with a 503 in our words, and nothing charged."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from accounts.models import Organization
from generations import catalog
from generations.availability import Reporter, unavailable_reasons
from generations.engine import sources
from generations.models import Generation, ModelStatus
from generations.worker import embedded
from generations.worker.probe import probe_models

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/v1/images/generations"
# What the model-hub library says when it fails; a tenant must never read it.
LIBRARY_WORDS = ("local_files_only", "snapshot", "huggingface.co/docs", "Errno", "HTTPError")


def test_probe_in_our_words(extra_model, tmp_path, monkeypatch):
    assert sources.probe(catalog.get_model("demo-sd")) == sources.Probe(None, cached=True)

    extra_model(id="ghost", source=str(tmp_path / "never-built"), architecture="sd", demo=True)
    assert "manage.py build_demo_models" in sources.probe(catalog.get_model("ghost")).reason

    flux = catalog.get_model("flux.1-schnell")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "downloads are switched off" in sources.probe(flux).reason

    # With downloads on, the hub is asked; here it refuses the connection (a closed port).
    import huggingface_hub.hf_api

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", "http://127.0.0.1:9")
    reason = sources.probe(flux).reason
    assert reason == (
        "its weights (black-forest-labs/FLUX.1-schnell) are not on this server, and the "
        "model hub cannot be reached to download them."
    )


def test_a_model_no_worker_can_load_is_refused_before_any_charge(tenant, api):
    before = Organization.objects.get(pk=tenant.org.pk).credit_balance
    found = probe_models(["demo-sd", "flux.1-schnell"])
    assert found["demo-sd"] is None
    assert found["flux.1-schnell"].startswith(
        "Model 'flux.1-schnell' is not available on this server: its weights"
    )

    response = api.post(URL, {"prompt": "p", "model": "flux.1-schnell"}, format="json")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_unavailable" and error["param"] == "model"
    assert error["message"] == found["flux.1-schnell"]
    assert not Generation.objects.exists()
    assert Organization.objects.get(pk=tenant.org.pk).credit_balance == before
    # Its hub id (an alias) is refused the same way; the demo model still works.
    alias = {"prompt": "p", "model": "black-forest-labs/FLUX.1-schnell"}
    assert api.post(URL, alias, format="json").status_code == 503
    assert api.post(URL, {"prompt": "p", "model": "demo-sd"}, format="json").status_code == 200

    models = {m["id"]: m for m in api.get("/v1/models").json()["data"]}
    assert models["flux.1-schnell"]["available"] is False
    assert models["flux.1-schnell"]["unavailable_reason"] == found["flux.1-schnell"]
    assert models["demo-sd"]["available"] is True
    assert models["demo-sd"]["unavailable_reason"] is None
    # A model no worker reported on is given the benefit of the doubt.
    assert models["sdxl-turbo"]["available"] is True
    one = api.get("/v1/models/flux.1-schnell").json()
    assert one["available"] is False


def test_one_worker_that_can_load_it_is_enough_and_old_reports_expire(tenant, api):
    reporter = Reporter()
    reporter.report(model="demo-flux", worker="gpu-a:1", reason="Model 'demo-flux' ... no.")
    assert "demo-flux" in unavailable_reasons()
    reporter.report(model="demo-flux", worker="gpu-b:1", reason=None)
    assert "demo-flux" not in unavailable_reasons()
    assert api.post(URL, {"prompt": "p", "model": "demo-flux"}, format="json").status_code == 200

    # The in-process worker that ran it reports the model loaded once the job is done.
    deadline = time.monotonic() + 30
    while embedded.busy() and time.monotonic() < deadline:
        time.sleep(0.05)
    ModelStatus.objects.exclude(worker="gpu-a:1").delete()  # gpu-b, and the one that ran it
    assert "demo-flux" in unavailable_reasons()
    ModelStatus.objects.update(checked_at=timezone.now() - dt.timedelta(days=1))
    assert unavailable_reasons() == {}


def test_a_failed_load_is_reported_and_the_next_request_refused_up_front(tenant, api, extra_model):
    # Nothing probed this model: the job runs, fails to load it (HF_HUB_OFFLINE in the
    # test settings), the hold is released, and the worker reports it.
    extra_model(id="nowhere", source="example-org/does-not-exist", architecture="sd")
    before = Organization.objects.get(pk=tenant.org.pk).credit_balance
    first = api.post(URL, {"prompt": "p", "model": "nowhere"}, format="json")
    assert first.status_code == 503, first.content
    message = first.json()["error"]["message"]
    assert message.startswith("Model 'nowhere' is not available on this server: ")
    assert not any(words in message for words in LIBRARY_WORDS), message
    assert Generation.objects.count() == 1

    second = api.post(URL, {"prompt": "p", "model": "nowhere"}, format="json")
    assert second.status_code == 503
    assert second.json()["error"]["message"] == message
    assert Generation.objects.count() == 1  # refused before anything was recorded
    assert Organization.objects.get(pk=tenant.org.pk).credit_balance == before


def test_the_key_form_marks_models_this_server_cannot_load(tenant, client):
    probe_models(["flux.1-schnell"])
    client.force_login(tenant.user)
    page = client.get("/keys/").content.decode()
    assert "flux.1-schnell (not available on this server)" in page
    assert "demo-sd (not available" not in page
