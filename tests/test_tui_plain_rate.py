"""The panel's "plain" rate (Engine.plain_tokens_per_s = CostModel.plain), on
synthetic step traces: what plain decoding does here, never what it does
under the chat's own load or what a bare calibrated decode suggests."""

from __future__ import annotations

from localspec.costs import CostModel
from localspec.events import Counters, EmittedToken, StepEvent

CURVE = {1: 0.070, 2: 0.100, 3: 0.130, 4: 0.136, 5: 0.170}


class Trace:
    """Steps of one reply, timed as the generation loop times them."""

    def __init__(self, costs: CostModel):
        self.costs = costs
        self.counters = Counters()

    def step(self, verify_s: float, drafted: int = 0, accepted: int = 0, draft_s: float = 0.0, other_s: float = 0.0):
        c = self.counters
        tokens = tuple(EmittedToken(0, "draft") for _ in range(accepted)) + (EmittedToken(0, "target"),)
        c.record_step(drafted, accepted)
        c.n_generated += len(tokens)
        c.gen_s += draft_s + verify_s + other_s
        event = StepEvent(
            tokens, ("x",) * len(tokens), "x" * len(tokens), "lookup" if drafted else "none", drafted, drafted,
            accepted, draft_s, verify_s, draft_s + verify_s + other_s, c.snapshot(),
        )  # fmt: skip
        self.costs.record_verify(event)


def seeded() -> CostModel:
    c = CostModel()
    c.seed(CURVE, {})
    return c


def test_nothing_is_claimed_before_a_step_has_been_measured():
    assert seeded().plain.tokens_per_s is None


def test_plain_counts_the_loop_overhead_the_calibration_leaves_out():
    costs = seeded()
    trace = Trace(costs)
    for _ in range(40):
        trace.step(0.070, draft_s=0.001, other_s=0.004)  # a plain step: plan, decode, bookkeeping
    assert abs(costs.plain.tokens_per_s - 1 / 0.075) < 0.01 / 0.075


def test_the_chat_drawing_on_some_steps_does_not_lower_plain():
    """A step that a UI flush lands on is slower; the yardstick stays at the
    undisturbed steps (within a few percent), not at their mean."""
    costs = seeded()
    trace = Trace(costs)
    for i in range(300):
        slow = 1.3 if i % 3 == 0 else 1.0
        trace.step(0.070 * slow, other_s=0.003 * slow)
    quiet = 1 / 0.073
    assert quiet * 0.97 < costs.plain.tokens_per_s <= quiet * 1.01


def test_drafting_steps_measure_plain_through_the_curve():
    """Only 5-row steps run, at a level 1.2 above the curve (a longer context):
    plain is priced at that level too."""
    costs = seeded()
    trace = Trace(costs)
    for _ in range(100):
        trace.step(CURVE[5] * 1.2, drafted=4, accepted=3, other_s=0.002)
    expected = 1 / (CURVE[1] * 1.2 + 0.002)
    assert abs(costs.plain.tokens_per_s / expected - 1) < 0.03


def test_a_stale_fast_calibration_is_not_believed():
    """Calibration said 0.043 s a row; every step takes 0.067: within a reply plain follows the steps."""
    costs = CostModel()
    costs.seed({1: 0.043}, {})
    trace = Trace(costs)
    for _ in range(200):
        trace.step(0.067)
    assert abs(costs.plain.tokens_per_s * 0.067 - 1) < 0.01


def test_plain_follows_the_context_over_the_reply():
    """Decode cost grows with the context; plain compares with the same
    tokens at the same context lengths, so it is the reply's average, not the end's."""
    costs = seeded()
    trace = Trace(costs)
    n = 400
    times = [0.050 * (1 + 0.5 * i / n) for i in range(n)]
    for t in times:
        trace.step(t)
    mean = sum(times) / n
    assert abs(costs.plain.tokens_per_s * mean - 1) < 0.03


def test_each_reply_is_measured_on_its_own_tokens():
    costs = seeded()
    first = Trace(costs)
    for _ in range(50):
        first.step(0.070)
    second = Trace(costs)
    second.step(0.070)
    assert costs.plain.tokens == 1
