"""The publish-latency histogram: Prometheus' cumulative buckets, a value on a bound counted in that bound's bucket."""

from __future__ import annotations

import pytest

from ingest.metrics import Histogram


@pytest.mark.parametrize(("value", "le"), [
    (0.0, "0.1"),
    (0.05, "0.1"),
    (0.1, "0.1"),  # on a bound: in that bucket (le = less or equal)
    (0.1000001, "0.5"),
    (0.5, "0.5"),  # on the last bound
    (0.7, "+Inf"),  # above every bound: only in +Inf, count and sum
])
def test_a_value_lands_in_the_first_bucket_whose_bound_it_does_not_exceed(value, le):
    histogram = Histogram((0.1, 0.5))
    histogram.observe(value)
    lines = histogram.render("h")
    first = next(line for line in lines if line.endswith(" 1"))
    assert first == f'h_bucket{{le="{le}"}} 1'
    assert lines[-1] == "h_count 1" and lines[-2] == f"h_sum {value:.6f}"
