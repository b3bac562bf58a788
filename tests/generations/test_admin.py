"""Operators see generation records, with thumbnails, in the Django admin."""

import pytest

from accounts.models import User

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_lists_generations_with_thumbnails_and_filters(api, client):
    generation_id = api.post(
        "/v1/images/generations", {"prompt": "for the admin", "n": 2}, format="json"
    ).json()["id"]
    staff = User.objects.create_superuser(email="staff@example.com", password="pw")
    client.force_login(staff)
    listing = client.get("/admin/generations/generation/")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert generation_id in html and html.count('<img src="') >= 2
    assert "By status" in html and "By model" in html
    detail = client.get(f"/admin/generations/generation/{generation_id}/change/")
    assert detail.status_code == 200 and "/v1/files/" in detail.content.decode()


def test_admin_is_for_staff_only(client, tenant):
    client.force_login(tenant.user)
    response = client.get("/admin/generations/generation/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
