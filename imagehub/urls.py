from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.generic import RedirectView
from drf_spectacular.views import (
    SpectacularJSONAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from imagehub.health import healthz, readyz
from imagehub.metrics import metrics_view

urlpatterns = [
    path("", include("generations.api.urls")),
    path("", include("accounts.api.urls")),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    # Browsers ask for /favicon.ico whatever the page's <link rel="icon"> says.
    path("favicon.ico", RedirectView.as_view(url=lazy(static, str)("imagehub/favicon.svg"))),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi-schema"),
    # The split view serves its start-up script as a file: no inline script (CSP).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="openapi-schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="openapi-schema"), name="redoc"),
    path("admin/", admin.site.urls),
    path("", include("generations.views.urls")),
    path("", include("accounts.views.urls")),
]

handler400 = "imagehub.errors.handler400"
handler403 = "imagehub.errors.handler403"
handler404 = "imagehub.errors.handler404"
handler500 = "imagehub.errors.handler500"
