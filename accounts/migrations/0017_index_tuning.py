"""Issue 24's index audit of the big tables (ledger entries, hourly rollups, webhook
deliveries): the indexes their queries use and no others, changed CONCURRENTLY on
PostgreSQL so that a live deployment keeps writing (imagehub/online_schema.py).

- Rollups: (organization, hour) INCLUDE the columns the tenant's usage reads sum and
  group by, so that the usage page, the usage API and the credits read a few index
  pages (index-only scans) instead of one heap page per hourly row.
- Deliveries: the tenant's list reads newest first by id (`before` cursor on the id);
  (organization, -id) replaces (organization, -created_at), which matched no query.
- The single-column foreign-key indexes on organization (ledger, rollups, deliveries)
  go: a composite index starting with organization serves the same lookups. The rollups'
  api_key and user indexes go: no query looks rollups up by key or user alone.
- The `_like` (varchar_pattern_ops) twins Django made on PostgreSQL for the ledger's
  generation_id and idempotency_key and the deliveries' msg_id go: no query does a
  prefix LIKE on them (300 MB of the ledger's 730 MB of indexes at issue 24's volumes).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from imagehub.online_schema import (
    AddIndexOnline,
    RemoveIndexOnline,
    drop_foreign_key_index,
    drop_pattern_index,
)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("accounts", "0016_usage_adapters"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexOnline(
            model_name="webhookdelivery",
            index=models.Index(fields=["organization", "-id"], name="webhook_delivery_list"),
        ),
        RemoveIndexOnline(model_name="webhookdelivery", name="accounts_we_organiz_c1198a_idx"),
        AddIndexOnline(
            model_name="usagerollup",
            index=models.Index(
                fields=["organization", "hour"],
                include=(
                    "model",
                    "api_key",
                    "user",
                    "requests",
                    "succeeded",
                    "failed",
                    "images",
                    "credits",
                    "input_tokens",
                    "output_tokens",
                    "latency_ms_total",
                ),
                name="usage_rollup_tenant_hours",
            ),
        ),
        RemoveIndexOnline(model_name="usagerollup", name="accounts_us_organiz_4555e3_idx"),
        drop_foreign_key_index(
            "accounts",
            "webhookdelivery",
            "organization",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="webhook_deliveries",
                to="accounts.organization",
            ),
        ),
        drop_foreign_key_index(
            "accounts",
            "creditentry",
            "organization",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="ledger",
                to="accounts.organization",
            ),
        ),
        drop_foreign_key_index(
            "accounts",
            "usagerollup",
            "organization",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="accounts.organization",
            ),
        ),
        drop_foreign_key_index(
            "accounts",
            "usagerollup",
            "api_key",
            models.ForeignKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="accounts.apikey",
            ),
        ),
        drop_foreign_key_index(
            "accounts",
            "usagerollup",
            "user",
            models.ForeignKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        drop_pattern_index("accounts", "creditentry", "generation_id"),
        drop_pattern_index("accounts", "creditentry", "idempotency_key"),
        drop_pattern_index("accounts", "webhookdelivery", "msg_id"),
    ]
