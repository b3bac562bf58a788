"""The official `openai` SDK against a live server with a policy: both stages raise
BadRequestError carrying OpenAI's moderation_blocked code and moderation_details."""

from __future__ import annotations

import openai
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(live_server, tenant):
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=tenant.secret, max_retries=0)


def test_the_sdk_raises_bad_request_at_the_input_stage(client, policy):
    policy({"categories": {"violence": {"terms": ["gore"]}}})
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(model="demo-sd", prompt="Gore everywhere", size="64x64")
    error = raised.value
    assert error.status_code == 400 and error.code == "moderation_blocked"
    assert error.type == "image_generation_user_error"
    assert "safety_violations=[violence]" in error.message
    assert error.body["moderation_details"] == {
        "moderation_stage": "input",
        "categories": ["violence"],
    }
    # `moderation` is a parameter the SDK sends as it is.
    images = client.images.generate(
        model="demo-sd", prompt="a lighthouse", size="64x64", moderation="low"
    )
    assert len(images.data) == 1


def test_the_sdk_raises_bad_request_at_the_output_stage(client, policy, demo_classifiers):
    policy(
        {
            "image_classifier": {
                "source": str(demo_classifiers["image"]),
                "labels": {"unsafe": "sexual"},
                "threshold": 0,
            }
        }
    )
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(model="demo-sd", prompt="a lighthouse", size="64x64", n=2)
    assert raised.value.code == "moderation_blocked"
    assert raised.value.body["moderation_details"] == {
        "moderation_stage": "output",
        "categories": ["sexual"],
    }
    assert raised.value.body["generation_id"].startswith("gen_")
