"""The benchmarks' steady rate: the first round (queue filling, batches forming from
nothing) and the last (companions gone) do not count, as a service under constant load
never sees them; the requests between them do, each client's own."""

from __future__ import annotations

import time

import pytest

from tests.bench import closed_loop


def test_steady_rate_leaves_out_the_first_and_last_rounds():
    per_client = 6

    def call(client: int, i: int) -> dict:
        first_or_last = i % per_client in (0, per_client - 1)
        time.sleep(0.4 if first_or_last else 0.05)
        return {"client": client}

    started = time.perf_counter()
    results, rate = closed_loop(2, per_client, call, "test")
    wall = time.perf_counter() - started
    assert sorted(r["client"] for r in results) == [0] * per_client + [1] * per_client
    # Two clients, 20 requests a second each between their first and last requests; the
    # whole run's average would be far lower (12 requests in about 1 s).
    assert 30 < rate <= 40.5
    assert len(results) / wall < 15


def test_a_steady_rate_needs_three_requests_per_client():
    with pytest.raises(ValueError, match="3 requests"):
        closed_loop(1, 2, lambda client, i: {}, "test")
