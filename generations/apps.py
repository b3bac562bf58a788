from django.apps import AppConfig


class GenerationsConfig(AppConfig):
    name = "generations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from accounts import hooks
        from generations import availability, catalog, retention, selectors
        from generations.moderation import checks as moderation
        from generations.moderation import records as moderation_records
        from generations.worker import actors  # noqa: F401  (declares the actors)
        from imagehub import broker, health
        from imagehub import retention as purges

        def resolve_model(name: str) -> str | None:
            spec = catalog.get_model(name)
            return spec.id if spec is not None else None

        hooks.register(
            model_ids=lambda: [spec.id for spec in catalog.all_models()],
            resolve_model=resolve_model,
            unavailable_models=availability.unavailable_reasons,
            model_capabilities=catalog.capability_labels,
            job_counts=selectors.job_counts,
            queue_history=selectors.queue_history,
            moderation_history=moderation_records.block_history,
        )
        # The content policy is validated now: a bad file stops start-up with its reason
        # (an ImproperlyConfigured naming the file, the field and the problem).
        moderation.current()
        health.register_warm_workers(availability.warm_workers)
        # Images before records: a record past both retentions loses its files first.
        purges.register(
            "generation_images",
            retention.images_purge_batch,
            keeps="images, inputs and previews of generations: IMAGEHUB_IMAGE_RETENTION_DAYS",
        )
        purges.register(
            "generation_records",
            retention.records_purge_batch,
            keeps="generation records: IMAGEHUB_GENERATION_RETENTION_DAYS",
        )
        purges.register(
            "moderation_blocks",
            moderation_records.blocks_purge_batch,
            keeps="moderation block records: IMAGEHUB_MODERATION_RETENTION_DAYS",
        )
        if broker.is_in_process():
            # The embedded default: worker threads in this process, started with the
            # first job or the web server. A production web process (broker URL set)
            # never imports the worker's engine (tests/test_web_process.py).
            from generations.worker import embedded

            broker.before_send(embedded.ensure_started)
            broker.at_server_start(embedded.start_with_server)
