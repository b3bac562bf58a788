"""OpenAPI descriptions of our authenticators (drf-spectacular finds them on import)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.BearerKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An imagehub API key: `Authorization: Bearer ihk_...`. The image "
            "API needs a 'generate' key, the management API a 'manage' key.",
        }
