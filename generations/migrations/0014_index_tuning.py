"""Issue 24's index audit of generations and images, CONCURRENTLY on PostgreSQL
(imagehub/online_schema.py):

- generation_incidents: the operator dashboard's recovery counts of the last 24 hours
  read the few jobs that needed recovery instead of the day's every job.
- The single-column foreign-key indexes on Generation.organization and
  GeneratedImage.generation go: (organization, -created_at) and the unique
  (generation, index) serve the same lookups.
- The `_like` (varchar_pattern_ops) twin of the generations' primary key goes: no query
  does a prefix LIKE on a generation id (84 MB at issue 24's volumes).
"""

import django.db.models.deletion
from django.db import migrations, models

from imagehub.online_schema import AddIndexOnline, drop_foreign_key_index, drop_pattern_index


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("generations", "0013_adapters"),
    ]

    operations = [
        AddIndexOnline(
            model_name="generation",
            index=models.Index(
                condition=models.Q(
                    ("recoveries__gt", 0),
                    ("dispatches__gt", 1),
                    ("error_code", "worker_lost"),
                    _connector="OR",
                ),
                fields=["created_at"],
                name="generation_incidents",
            ),
        ),
        drop_foreign_key_index(
            "generations",
            "generation",
            "organization",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="generations",
                to="accounts.organization",
            ),
        ),
        drop_foreign_key_index(
            "generations",
            "generatedimage",
            "generation",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="images",
                to="generations.generation",
            ),
        ),
        drop_pattern_index("generations", "generation", "id"),
    ]
