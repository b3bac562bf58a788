"""The web pages of generations: the model catalog (models.py) and the organization's
Adapters page (adapters.py), routed by urls.py (included by imagehub/urls.py). Thin like
accounts/views/: the checks and writes are generations/adapters/'s; pages never import the
REST API."""
