"""Django's PostgreSQL backend with a connection pool that recovers from a blip at once
(DATABASES ENGINE "imagehub.postgresql", a name that still ends in "postgresql" for the
code that asks; imagehub.settings.database_config sets it)."""
