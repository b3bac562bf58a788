from django.urls import path

from generations.api import adapters, views

create = views.ImageGenerationViewSet.as_view({"post": "create"})
retrieve = views.ImageGenerationViewSet.as_view({"get": "retrieve"})

create_or_list = views.ImageGenerationViewSet.as_view({"post": "create", "get": "list"})

urlpatterns = [
    path("v1/images/generations", create_or_list, name="image-generations"),
    # Paths other providers use for the same endpoint (see the provider docs we follow).
    path("v1/images/generation", create),
    path("api/images/generations", create),
    path(
        "v1/images/edits",
        views.ImageEditViewSet.as_view({"post": "create"}),
        name="image-edits",
    ),
    path(
        "v1/images/variations",
        views.ImageVariationViewSet.as_view({"post": "create"}),
        name="image-variations",
    ),
    path("v1/images/generations/<str:pk>", retrieve, name="image-generation-detail"),
    path(
        "v1/images/generations/<str:pk>/cancel",
        views.ImageGenerationViewSet.as_view({"post": "cancel"}),
        name="image-generation-cancel",
    ),
    path("v1/models", views.ModelViewSet.as_view({"get": "list"}), name="models"),
    # Hub ids contain a slash ("black-forest-labs/FLUX.1-schnell").
    path(
        "v1/models/<path:pk>", views.ModelViewSet.as_view({"get": "retrieve"}), name="model-detail"
    ),
    path("v1/files/<path:name>", views.serve_file, name="image-file"),
    path("v1/adapters", adapters.AdapterListView.as_view(), name="adapters-api"),
    path("v1/adapters/<str:pk>", adapters.AdapterDetailView.as_view(), name="adapter-detail"),
]
