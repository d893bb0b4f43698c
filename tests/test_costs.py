"""The cost model on synthetic step traces: pure arithmetic, no model. The
calibration that seeds it runs on a real model in test_calibrate."""

from __future__ import annotations

from localspec.costs import CostModel
from localspec.events import Counters, StepEvent

# A 2-core AVX2 CPU as measured: 4 rows cost about what 3 do, 8 far more than 7.
CPU_CURVE = {1: 0.074, 2: 0.103, 3: 0.131, 4: 0.136, 5: 0.172, 6: 0.204, 7: 0.238, 8: 0.346, 9: 0.363}


def costs(verify_one: float, per_row: float, draft_token: float = 0.0) -> CostModel:
    c = CostModel()
    c.seed({n: verify_one + per_row * (n - 1) for n in (1, 2, 3, 5, 9)}, {"draft": draft_token})
    return c


def curve_costs(curve: dict[int, float]) -> CostModel:
    c = CostModel()
    c.seed(curve, {})
    return c


def step(drafted: int, verify_s: float) -> StepEvent:
    method = "lookup" if drafted else "none"
    return StepEvent((), (), "", method, drafted, drafted, drafted, 0.0, verify_s, verify_s, Counters())


def test_draft_cost_counts_catching_up():
    c = costs(0.07, 0.02, 0.03)
    assert c.draft("draft", 3, behind=20) > c.draft("draft", 3, behind=1)
    assert c.draft("lookup", 3, behind=20) == 0.0


def test_verify_cost_interpolates_between_measured_sizes():
    c = costs(0.1, 0.05)
    assert abs(c.verify(4) - 0.25) < 1e-9
    assert c.verify(12) > c.verify(9)


def test_a_slower_level_reprices_sizes_that_were_not_run():
    """A long context makes every step slower. Only plain steps run while it
    grows; a 5-row verify must still be priced at the new level."""
    c = curve_costs(CPU_CURVE)
    for _ in range(30):
        c.record_verify(step(0, CPU_CURVE[1] * 1.5))
    assert abs(c.verify(5) / (CPU_CURVE[5] * 1.5) - 1) < 0.05
    assert abs(c.verify(1) / (CPU_CURVE[1] * 1.5) - 1) < 0.05


def test_a_slow_spell_while_drafting_does_not_price_drafts_out_for_good():
    """Steps of 5 rows run three times slower for a while (another program on
    the cores); then only plain steps run, at normal speed. The 5-row price
    must come back, although no 5-row step ran since."""
    c = curve_costs(CPU_CURVE)
    for _ in range(20):
        c.record_verify(step(4, CPU_CURVE[5] * 3))
    assert c.verify(5) > CPU_CURVE[5] * 2
    for _ in range(30):
        c.record_verify(step(0, CPU_CURVE[1]))
    assert c.verify(5) < CPU_CURVE[5] * 1.3  # from 3x: the spell went mostly on the level


def test_a_size_slower_than_calibrated_is_learned():
    """The curve itself moves when one size keeps costing more than the level
    explains (a context where 5 rows take a slower kernel path)."""
    c = curve_costs(CPU_CURVE)
    for _ in range(150):
        c.record_verify(step(0, CPU_CURVE[1]))
        c.record_verify(step(4, CPU_CURVE[5] * 1.5))
    assert c.verify(5) > CPU_CURVE[5] * 1.3
    assert c.verify(1) < CPU_CURVE[1] * 1.15


def test_draft_catch_up_follows_its_calibrated_batch_line():
    c = CostModel()
    c.seed(CPU_CURVE, {"draft": 0.031}, {1: 0.031, 4: 0.078, 8: 0.132})
    assert abs(c.draft("draft", 1, behind=4) - 0.078) < 0.005
    assert abs(c.draft("draft", 1, behind=8) - 0.132) < 0.005
    assert abs(c.draft("draft", 3, behind=1) - (0.031 + 2 * 0.031)) < 0.005


def test_a_snapshot_read_back_from_json_prices_as_the_model_did():
    import json

    c = CostModel()
    c.seed(CPU_CURVE, {"draft": 0.031}, {1: 0.031, 4: 0.078, 8: 0.132})
    for _ in range(10):
        c.record_verify(step(0, CPU_CURVE[1] * 1.2))
    back = CostModel.from_snapshot(json.loads(json.dumps(c.snapshot())))
    for n in CPU_CURVE:
        assert abs(back.verify(n) - c.verify(n)) < 1e-12
    for k, behind in ((1, 1), (3, 1), (2, 6)):
        assert abs(back.draft("draft", k, behind) - c.draft("draft", k, behind)) < 1e-12
