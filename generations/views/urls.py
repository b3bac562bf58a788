"""URLs of the generations pages (the REST API's are in generations/api/urls.py)."""

from django.urls import path

from generations.views import adapters, models

urlpatterns = [
    path("models/", models.model_catalog, name="model-catalog"),
    path("adapters/", adapters.adapter_page, name="adapters"),
    path("adapters/<str:pk>/delete/", adapters.adapter_delete_page, name="adapter-delete"),
]
