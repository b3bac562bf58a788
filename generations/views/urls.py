from django.urls import path

from generations.views import models

urlpatterns = [
    path("models/", models.model_catalog, name="model-catalog"),
]
