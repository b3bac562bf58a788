"""Django's PostgreSQL backend with a connection pool that recovers from a blip at once
(DATABASES ENGINE "imagehub.postgres"; imagehub.settings.database_config sets it)."""
