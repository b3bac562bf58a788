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


def _generations(cur, *, first: int, count: int, orgs_sql: str, key_sql: str, days: int):
    cur.execute(
        f"""
        INSERT INTO generations_generation ({GENERATION_COLUMNS})
        SELECT {GENERATION_ROW}
        FROM (
          SELECT i, {orgs_sql} AS org, {key_sql} AS key,
                 CASE WHEN i %% 3 = 0 THEN 2 ELSE 1 END AS n,
                 CASE WHEN i %% 20 = 7 THEN 'failed' WHEN i %% 50 = 11 THEN 'canceled'
                      ELSE 'succeeded' END AS status,
                 now() - interval '15 s' - (random() * interval '{days} days') AS created
          FROM generate_series(%s::bigint, %s::bigint) AS i
        ) AS s
        """,
        (first, first + count - 1),
    )


def seed(dsn: str, volumes: Volumes, *, big_org: int, big_key: int, small_org: int,
         small_key: int) -> dict:  # fmt: skip
    """Fill the database; returns what was made (row counts)."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SET synchronous_commit = off")
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
        _generations(
            cur, first=1, count=volumes.big, orgs_sql=str(big_org), key_sql=str(big_key),
            days=volumes.days,
        )  # fmt: skip
        n_small = len(smalls)
        _generations(
            cur,
            first=volumes.big + 1,
            count=volumes.small_each * n_small,
            orgs_sql=f"({small_array})[1 + i %% {n_small}]",
            key_sql=f"CASE WHEN i %% {n_small} = 0 THEN {small_key} END",
            days=volumes.days,
        )
        _images(cur)
        _ledger(cur)
        _rollups(cur, volumes, [big_org, *smalls], big_key, small_key)
        _deliveries(cur, volumes, [big_org, *smalls])
        cur.execute("VACUUM ANALYZE")
        counts = {}
        for table in (
            "generations_generation",
            "generations_generatedimage",
            "accounts_creditentry",
            "accounts_usagerollup",
            "accounts_webhookdelivery",
        ):
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
        cur.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        counts["size"] = cur.fetchone()[0]
        return counts


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
        SELECT organization_id, 'hold', -price, price, id, 'gen:' || id || ':hold', '', created_at
        FROM generations_generation WHERE price > 0;
        INSERT INTO accounts_creditentry
          (organization_id, kind, amount, held, generation_id, idempotency_key, memo, created_at)
        SELECT organization_id,
               CASE status WHEN 'succeeded' THEN 'capture' ELSE 'release' END,
               CASE status WHEN 'succeeded' THEN 0 ELSE price END, -price, id,
               'gen:' || id || CASE status WHEN 'succeeded' THEN ':capture' ELSE ':release' END,
               '', finished_at
        FROM generations_generation
        WHERE price > 0 AND status IN ('succeeded', 'failed', 'canceled');
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
        """
    )


def _deliveries(cur, volumes: Volumes, orgs: list[int]) -> None:
    org_array = "ARRAY[" + ",".join(str(o) for o in orgs) + "]::bigint[]"
    chunks = max(1, volumes.delivery_body_bytes // 32)
    cur.execute(
        f"""
        INSERT INTO accounts_webhookdelivery
          (organization_id, generation_id, event, url, msg_id, body, status, attempts,
           next_attempt_at, retry_until, last_attempt_at, last_status_code, last_error,
           delivered_at, created_at)
        SELECT ({org_array})[1 + i %% {len(orgs)}], 'gen_seed' || i, 'completed',
               'https://hooks.example.com/imagehub', 'msg_seed_' || i,
               '{{"data": "' || (SELECT string_agg(md5(i::text || k), '')
                               FROM generate_series(1, {chunks}) AS k) || '"}}',
               CASE WHEN i %% 40 = 0 THEN 'failed' ELSE 'succeeded' END, 1, NULL,
               created + interval '24 hours', created, 204, '', created, created
        FROM (SELECT i, now() - (random() * interval '{volumes.days} days') AS created
              FROM generate_series(1, %s::bigint) AS i) AS s
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
