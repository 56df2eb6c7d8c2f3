"""Training memory: measured per batch in child processes, and a batch that fits the machine."""

from __future__ import annotations

import pytest

from segcore.engine.memory import TrainProbe, _child, fit_batch, probe


def test_fit_batch_takes_the_largest_batch_that_fits_or_refuses_in_one_line():
    cost = TrainProbe(arch="centermask_v99", side=640, base_mb=1500.0, per_image_mb=3400.0, seconds_per_iteration=9.0)
    assert cost.peak_mb(4) == 1500 + 4 * 3400
    assert fit_batch(4, cost, available=24_000) == 4                  # 14.9 GB of 19.2 usable
    assert fit_batch(4, cost, available=12_000) == 2                  # 8.3 GB of 9.6 usable
    with pytest.raises(ValueError, match=r"needs about 4\.8 GB at batch 1, but only 4\.9 GB are available") as exc:
        fit_batch(4, cost, available=5_000)
    assert "\n" not in str(exc.value)


@pytest.mark.slow
def test_probe_measures_more_memory_for_a_larger_batch():
    """Real child processes: batch 2 peaks higher than batch 1 by a per-image cost that a batch-4
    step then predicts within a third of its growth over the base, or 64 MB where that is more
    (the allocator's jitter: yolact_tiny at 256 costs ~23 MB an image, and one run measured
    1150 MB at batch 4 against 1094 predicted)."""
    cost = probe("yolact_tiny", side=256, threads=1)
    assert cost.per_image_mb > 1 and cost.base_mb > 200 and cost.seconds_per_iteration > 0
    four = _child("yolact_tiny", 4, 256, 2, None, 1, timeout=600)
    assert four["peak_mb"] > cost.peak_mb(2)
    assert abs(four["peak_mb"] - cost.peak_mb(4)) < max(0.35 * (four["peak_mb"] - cost.base_mb), 64.0), (four, cost)
