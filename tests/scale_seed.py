"""Seed a migrated PostgreSQL database with a busy deployment's 90 days, in SQL.

Rows in the shapes the code writes (generation ids, file names, ledger idempotency keys,
money that reconciles, rollup histograms in accounts/usage.py buckets), made with
generate_series in the database: minutes for the issue's volumes, never the ORM row by
row. `Volumes(scale)` multiplies the issue's numbers (scale 1: one tenant with 1,000,000
generations, 50 with 10,000, ~1.9 M images, ~3 M ledger entries, 295 k hourly rollups,
333 k webhook deliveries).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class Volumes:
    scale: float = 1.0
    small_tenants: int = 50
    days: int = 90
    delivery_body_bytes: int = 2048

    @property
    def big(self) -> int:
        return round(1_000_000 * self.scale)

    @property
    def small_each(self) -> int:
        return round(10_000 * self.scale)

    @property
    def rollups(self) -> int:
        return round(295_000 * self.scale)

    @property
    def deliveries(self) -> int:
        return round(333_000 * self.scale)


GENERATION_COLUMNS = """id, organization_id, api_key_id, user_id, end_user, kind, model, prompt,
  negative_prompt, n, width, height, steps, guidance_scale, seed, quality, response_format,
  output_format, output_compression, params, status, error_code, error_message, attempts,
  worker, heartbeat_at, redispatch_at, dispatches, recoveries, cancel_requested_at, price,
  unit_price, charged, input_text_tokens, input_image_tokens, output_tokens, created_at,
  started_at, finished_at, inference_seconds, device_wait_seconds, purged_at"""

# One row of the generated series `i` (organization `org`, key `key`, created `created`).
GENERATION_ROW = """
  'gen_' || lpad(to_hex((extract(epoch FROM created) * 1000)::bigint), 12, '0')
    || lpad(to_hex(i), 16, '0'),
  org, key, NULL, '', 'generation', CASE WHEN i %% 4 = 0 THEN 'demo-flux' ELSE 'demo-sd' END,
  'a lighthouse on a cliff at dusk, number ' || i, '', n, 256, 256, 4, 5.0, i, 'auto',
  'url', 'png', NULL, '{}'::jsonb, status,
  CASE status WHEN 'failed' THEN 'model_error' ELSE '' END,
  CASE status WHEN 'failed' THEN 'The model failed.' ELSE '' END,
  1, 'seed-host:1', created + interval '2 s', NULL, 1, 0, NULL, 1000 * n, 1000,
  CASE status WHEN 'succeeded' THEN 1000 * n ELSE 0 END, 12, 0, 4096 * n, created,
  created + interval '0.5 s', created + interval '2 s', 1.4, 0.05, NULL"""


def _generations(cur, *, parts: list[tuple[int, int, str, str]], days: int) -> None:
    """Every tenant's generations in one insert, in creation order as traffic writes them
    (the tenants interleaved); `parts`: (first i, count, organization SQL, key SQL)."""
    series = " UNION ALL ".join(
        f"SELECT i, {orgs_sql} AS org, {key_sql} AS key "
        f"FROM generate_series({first}::bigint, {first + count - 1}::bigint) AS i"
        for first, count, orgs_sql, key_sql in parts
        if count > 0
    )
    if not series:
        return
    cur.execute(
        f"""
        INSERT INTO generations_generation ({GENERATION_COLUMNS})
        SELECT {GENERATION_ROW}
        FROM (
          SELECT i, org, key,
                 CASE WHEN i %% 3 = 0 THEN 2 ELSE 1 END AS n,
                 CASE WHEN i %% 20 = 7 THEN 'failed' WHEN i %% 50 = 11 THEN 'canceled'
                      ELSE 'succeeded' END AS status,
                 now() - %s::interval - (random() * interval '{days} days') AS created
          FROM ({series}) AS t
        ) AS s
        ORDER BY created
        """,
        ("15 seconds",),  # the newest finished before the benchmark's own jobs
    )


# The tables seeded in bulk: their plain indexes are dropped for the load and built
# again after it (PostgreSQL's advice for bulk loads: one sorted build per index instead of
# millions of random inserts); the indexes behind constraints (keys, unique) stay.
BULK_TABLES = (
    "generations_generation",
    "generations_generatedimage",
    "accounts_creditentry",
    "accounts_usagerollup",
    "accounts_webhookdelivery",
)


def _plain_indexes(cur) -> list[tuple[str, str]]:
    cur.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
        WHERE t.relname = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        """,
        (list(BULK_TABLES),),
    )
    return cur.fetchall()


def seed(dsn: str, volumes: Volumes, *, big_org: int, big_key: int, small_org: int,
         small_key: int) -> dict:  # fmt: skip
    """Fill the database; returns what was made (row counts)."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute("SET work_mem = '256MB'")
        # The rows are consistent by construction: no per-row foreign-key triggers.
        cur.execute("SET session_replication_role = replica")
        indexes = _plain_indexes(cur)
        for name, _ in indexes:
            cur.execute(f"DROP INDEX {name}")
        try:
            _fill(cur, volumes, big_org, big_key, small_org, small_key)
        finally:
            for _, definition in indexes:
                cur.execute(definition)
            cur.execute("SET session_replication_role = DEFAULT")
        cur.execute("VACUUM ANALYZE")
        counts = {}
        for table in BULK_TABLES:
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
        cur.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        counts["size"] = cur.fetchone()[0]
        return counts


def _fill(cur, volumes: Volumes, big_org: int, big_key: int, small_org: int, small_key: int):
    cur.execute(
        "INSERT INTO accounts_organization (name, slug, credit_balance, credits_held, "
        "queue_priority, queue_weight, created_at) SELECT 'Tenant ' || t, 'tenant-' || t, "
        "0, 0, 0, 1, now() - interval '100 days' FROM generate_series(2, %s) AS t",
        (volumes.small_tenants,),
    )
    cur.execute(
        "SELECT array_agg(id ORDER BY id) FROM accounts_organization WHERE id NOT IN (%s, %s)",
        (big_org, small_org),
    )
    others = cur.fetchone()[0] or []
    smalls = [small_org, *others][: volumes.small_tenants]
    small_array = "ARRAY[" + ",".join(str(o) for o in smalls) + "]::bigint[]"
    n_small = len(smalls)
    parts = [
        (1, volumes.big, str(big_org), str(big_key)),
        (
            volumes.big + 1,
            volumes.small_each * n_small,
            f"({small_array})[1 + i %% {n_small}]",
            f"CASE WHEN i %% {n_small} = 0 THEN {small_key} END",
        ),
    ]
    _generations(cur, parts=parts, days=volumes.days)
    _images(cur)
    _ledger(cur)
    _rollups(cur, volumes, [big_org, *smalls], big_key, small_key)
    _deliveries(cur, volumes, [big_org, *smalls])


def _images(cur) -> None:
    cur.execute(
        """
        INSERT INTO generations_generatedimage
          (generation_id, index, file, seed, width, height, content_type, bytes, created_at)
        SELECT g.id, k, g.organization_id || '/' || to_char(g.created_at, 'YYYY/MM/DD') || '/'
                 || g.id || '-' || k || '.png',
               g.seed + k, 256, 256, 'image/png', 98304, g.finished_at
        FROM generations_generation g CROSS JOIN LATERAL generate_series(0, g.n - 1) AS k
        WHERE g.status = 'succeeded'
        """
    )


def _ledger(cur) -> None:
    """A top-up per organization, a hold per generation, a capture or a release per
    finished one; then balances, held amounts and monthly totals from those entries."""
    cur.execute(
        """
        INSERT INTO accounts_creditentry
          (organization_id, kind, amount, held, generation_id, idempotency_key, memo, created_at)
        SELECT id, 'topup', 1000000000000000, 0, '', 'topup:seed-' || id, 'seed',
               now() - interval '100 days'
        FROM accounts_organization;
        INSERT INTO accounts_creditentry
          (organization_id, kind, amount, held, generation_id, idempotency_key, memo, created_at)
        SELECT * FROM (
          SELECT organization_id, 'hold', -price, price, id, 'gen:' || id || ':hold', '',
                 created_at
          FROM generations_generation WHERE price > 0
          UNION ALL
          SELECT organization_id,
                 CASE status WHEN 'succeeded' THEN 'capture' ELSE 'release' END,
                 CASE status WHEN 'succeeded' THEN 0 ELSE price END, -price, id,
                 'gen:' || id
                   || CASE status WHEN 'succeeded' THEN ':capture' ELSE ':release' END,
                 '', finished_at
          FROM generations_generation
          WHERE price > 0 AND status IN ('succeeded', 'failed', 'canceled')
        ) AS entries (organization_id, kind, amount, held, id, key, memo, at)
        ORDER BY at;  -- in time order, the holds and settlements interleaved, as written
        UPDATE accounts_organization o SET credit_balance = s.amount, credits_held = s.held
        FROM (SELECT organization_id, sum(amount) AS amount, sum(held) AS held
              FROM accounts_creditentry GROUP BY organization_id) s
        WHERE s.organization_id = o.id;
        DELETE FROM accounts_monthlyspend;
        INSERT INTO accounts_monthlyspend (organization_id, api_key_id, month, amount)
        SELECT organization_id, NULL, date_trunc('month', created_at AT TIME ZONE 'UTC')::date,
               sum(CASE WHEN status IN ('queued', 'running') THEN price ELSE charged END)
        FROM generations_generation WHERE price > 0 GROUP BY 1, 3
        UNION ALL
        SELECT organization_id, api_key_id,
               date_trunc('month', created_at AT TIME ZONE 'UTC')::date,
               sum(CASE WHEN status IN ('queued', 'running') THEN price ELSE charged END)
        FROM generations_generation WHERE price > 0 AND api_key_id IS NOT NULL
        GROUP BY 1, 2, 3;
        """
    )


def _rollups(cur, volumes: Volumes, orgs: list[int], big_key: int, small_key: int) -> None:
    """Hourly rows per (organization, model) over the days, the biggest tenant first;
    histograms of ~25 logarithmic buckets (1-5 s), 16 shapes."""
    if volumes.rollups == 0:
        return
    hours = volumes.days * 24
    per_hour = max(1, -(-volumes.rollups // hours))
    org_array = "ARRAY[" + ",".join(str(o) for o in orgs) + "]::bigint[]"
    cur.execute(
        f"""
        WITH shapes AS (
          SELECT t, jsonb_object_agg('b' || (345 + t * 4 + k), 1 + (k * 7 + t) % 5) AS histogram
          FROM generate_series(0, 15) AS t, generate_series(0, 24) AS k GROUP BY t
        ), combos AS (
          SELECT c, ({org_array})[1 + c % {len(orgs)}] AS org,
                 (ARRAY['demo-sd', 'demo-flux', 'legacy-model'])[1 + (c / {len(orgs)}) % 3] AS model
          FROM generate_series(0, {per_hour - 1}) AS c
        )
        INSERT INTO accounts_usagerollup
          (organization_id, hour, model, api_key_id, user_id, requests, succeeded, failed,
           images, credits, input_tokens, output_tokens, latency_ms_total, latency_histogram)
        SELECT combos.org, date_trunc('hour', now()) - h * interval '1 hour', combos.model,
               CASE combos.org WHEN {orgs[0]} THEN {big_key} WHEN {orgs[1]} THEN {small_key} END,
               NULL, 40, 38, 2, 50, 50000, 480, 204800, 60000, shapes.histogram
        FROM generate_series(0, {hours - 1}) AS h CROSS JOIN combos
        JOIN shapes ON shapes.t = (h + combos.c) % 16
        ORDER BY h DESC  -- oldest hour first: the order the workers append them
        """
    )


def _deliveries(cur, volumes: Volumes, orgs: list[int]) -> None:
    """Deliveries in the tenants' proportions of generations (the biggest first)."""
    share = volumes.big / max(volumes.big + volumes.small_each * (len(orgs) - 1), 1)
    small_array = "ARRAY[" + ",".join(str(o) for o in orgs[1:] or orgs) + "]::bigint[]"
    chunks = max(1, volumes.delivery_body_bytes // 32)
    cur.execute(
        f"""
        INSERT INTO accounts_webhookdelivery
          (organization_id, generation_id, event, url, msg_id, body, status, attempts,
           next_attempt_at, retry_until, last_attempt_at, last_status_code, last_error,
           delivered_at, created_at)
        SELECT CASE WHEN (i * 0.6180339887) %% 1 < {share} THEN {orgs[0]}
                    ELSE ({small_array})[1 + i %% {max(len(orgs) - 1, 1)}] END,
               'gen_seed' || i, 'completed',
               'https://hooks.example.com/imagehub', 'msg_seed_' || i,
               '{{"data": "' || (SELECT string_agg(md5(i::text || k), '')
                               FROM generate_series(1, {chunks}) AS k) || '"}}',
               CASE WHEN i %% 40 = 0 THEN 'failed' ELSE 'succeeded' END, 1, NULL,
               created + interval '24 hours', created, 204, '', created, created
        FROM (SELECT i, now() - (random() * interval '{volumes.days} days') AS created
              FROM generate_series(1, %s::bigint) AS i) AS s
        ORDER BY created
        """,
        (volumes.deliveries,),
    )


def seed_targets(dsn: str, *, org: int, key: int) -> dict[str, str]:
    """One running and one succeeded generation of a tenant, to poll (in every database,
    the empty one included); their money is in the ledger like any other."""
    made = {}
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        for label, status in (("running", "running"), ("done", "succeeded")):
            cur.execute(
                f"""
                INSERT INTO generations_generation ({GENERATION_COLUMNS})
                SELECT {GENERATION_ROW}
                FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::bigint AS i,
                             %s::bigint AS org, %s::bigint AS key, 1 AS n,
                             %s::text AS status, now() - interval '5 s' AS created) AS s
                RETURNING id
                """,
                (org, key, status),
            )
            made[label] = cur.fetchone()[0]
        cur.execute(
            "UPDATE generations_generation SET finished_at = NULL, heartbeat_at = now() "
            "WHERE id = %s",
            (made["running"],),
        )
    return made
