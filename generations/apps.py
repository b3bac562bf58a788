from django.apps import AppConfig


class GenerationsConfig(AppConfig):
    name = "generations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Declares the actors on the broker in every process (web and worker alike).
        from generations import actors  # noqa: F401
