"""The adaptive planner on synthetic cost and acceptance traces: pure logic,
no model. The same planner runs end to end in test_lossless/test_cli."""

from __future__ import annotations

import numpy as np

from localspec.controller import Acceptance, CostModel, Planner, best_k
from localspec.events import Counters, StepEvent


def costs(verify_one: float, per_row: float, draft_token: float = 0.0) -> CostModel:
    c = CostModel()
    c.seed({n: verify_one + per_row * (n - 1) for n in (1, 2, 3, 5, 9)}, {"draft": draft_token})
    return c


def test_plain_when_verification_is_expensive_and_acceptance_low():
    c = costs(0.07, 0.035, 0.035)  # this machine's shape: 5 rows cost 3x one
    assert best_k("draft", Acceptance([0.3, 0.3, 0.3, 0.3]), c, 8).k == 0
    assert best_k("lookup", Acceptance([0.3, 0.3]), c, 8).k == 0


def test_long_drafts_when_acceptance_is_high_and_rows_are_cheap():
    c = costs(0.07, 0.005)  # GPU-like: extra rows almost free
    assert best_k("lookup", Acceptance([0.95] * 8), c, 8).k == 8
    assert 0 < best_k("lookup", Acceptance([0.6] * 8), c, 8).k < 8


def test_k_grows_with_acceptance():
    c = costs(0.07, 0.02)
    ks = [best_k("lookup", Acceptance([a] * 8), c, 8).k for a in (0.2, 0.5, 0.8, 0.95)]
    assert ks == sorted(ks) and ks[0] == 0 and ks[-1] > 2


def test_expected_tokens_formula():
    acc = Acceptance([0.5, 0.5])
    # 1 + 0.5 + 0.25: the target's own token plus the chance of each draft prefix surviving
    assert abs(acc.expected_tokens(2) - 1.75) < 1e-12


def test_draft_cost_counts_catching_up():
    c = costs(0.07, 0.02, 0.03)
    assert c.draft("draft", 3, behind=20) > c.draft("draft", 3, behind=1)
    assert c.draft("lookup", 3, behind=20) == 0.0


def test_verify_cost_interpolates_between_measured_sizes():
    c = costs(0.1, 0.05)
    assert abs(c.verify(4) - 0.25) < 1e-9
    assert c.verify(12) > c.verify(9)


class FakeEngine:
    """Only the attributes the planner reads; the drafters are never called here."""

    def __init__(self):
        self.method = "auto"
        self.methods = ("auto", "draft", "lookup", "none")
        self.auto_draft = False
        self.draft_max = 4
        self.draft_model = type("D", (), {"cum_p_min": 0.0, "proposals": 0, "behind": lambda self, c: 1})()
        self.mtp = None
        self.lookup = type(
            "L", (), {"last_match_n": 0, "propose": lambda self, c, k, s, r: type("Dr", (), {"tokens": []})()}
        )()

    def drafter_for(self, name):
        return name


def step(method: str, drafted: int, accepted: int, verify_s: float, draft_s: float = 0.0) -> StepEvent:
    return StepEvent((), (), "", method, drafted, drafted, accepted, draft_s, verify_s, draft_s + verify_s, Counters())


def test_recovers_after_a_phase_change():
    """Draft model great, then useless (the text changed), then great again."""
    rng = np.random.default_rng(0)
    engine = FakeEngine()
    planner = Planner(engine, costs(0.07, 0.01, 0.01))

    def run(n_steps: int, alpha: float) -> list[int]:
        ks = []
        for _ in range(n_steps):
            method, _, k = planner.plan([1, 2, 3])
            ks.append(k if method == "draft" else 0)
            if method == "draft":
                accepted = 0
                while accepted < k and rng.random() < alpha:
                    accepted += 1
                planner.record(step("draft", k, accepted, 0.07 + 0.01 * k, 0.01 * k))
            else:
                planner.record(step("none", 0, 0, 0.07))
        return ks

    good = run(40, 0.95)
    bad = run(60, 0.05)
    again = run(200, 0.95)
    assert np.mean(good[-20:]) >= 3
    assert np.mean(bad[-20:]) < 0.5, "kept drafting after acceptance collapsed"
    assert np.mean(again[-20:]) >= 3, "never probed the draft model again"


def test_fixed_method_with_fixed_k_is_left_alone():
    engine = FakeEngine()
    engine.method, engine.draft_max = "draft", 3
    planner = Planner(engine, costs(0.07, 0.5, 0.5))  # would never draft if it chose
    assert planner.plan([1]) == ("draft", "draft", 3)
    engine.auto_draft = True
    assert planner.plan([1])[2] == 0


def test_failed_probes_back_off():
    """A draft model that never pays is probed ever more rarely, not every N steps."""
    engine = FakeEngine()
    planner = Planner(engine, costs(0.07, 0.01, 0.01))  # perfect drafts would pay...
    planner.acceptance["draft"] = Acceptance([0.05] * 4)  # ...but these are wrong
    probes = []
    for i in range(1500):
        method, _, k = planner.plan([1])
        if method == "draft":
            probes.append(i)
            planner.record(step("draft", k, 0, 0.07 + 0.01 * k, 0.01 * k))
        else:
            planner.record(step("none", 0, 0, 0.07))
    gaps = np.diff(probes)
    assert len(probes) >= 3
    assert all(b > a for a, b in zip(gaps, gaps[1:])), f"probe gaps should grow: {gaps}"


def test_no_probe_when_even_perfect_drafts_cannot_pay():
    """Verify cost growing like k+1 decodes (a 2-core CPU): the draft model is never tried."""
    engine = FakeEngine()
    planner = Planner(engine, costs(0.07, 0.065, 0.035))
    for _ in range(500):
        method, _, k = planner.plan([1])
        assert method == "none"
        planner.record(step("none", 0, 0, 0.07))


def test_no_probe_that_would_first_catch_up_a_long_prompt():
    engine = FakeEngine()
    engine.draft_model.behind = lambda context: 2000
    planner = Planner(engine, costs(0.07, 0.01, 0.01))
    for _ in range(300):
        method, _, _ = planner.plan([1])
        assert method == "none"
        planner.record(step("none", 0, 0, 0.07))


class FakeMtp:
    """The attributes the planner reads of an MTP drafter; `draft` simulates a proposal."""

    def __init__(self, seconds_per_token: float):
        self.cum_p_min = 0.0
        self.proposals = 0
        self.last_draft = (0, 0.0)
        self.seconds_per_token = seconds_per_token

    def draft(self, k: int) -> None:
        self.proposals += 1
        self.last_draft = (k, k * self.seconds_per_token)


def mtp_engine(seconds_per_token: float) -> FakeEngine:
    engine = FakeEngine()
    engine.methods = ("auto", "mtp", "lookup", "none")
    engine.draft_model = None
    engine.mtp = FakeMtp(seconds_per_token)
    return engine


def run_mtp_steps(planner: Planner, engine: FakeEngine, n: int, acceptance: float, c: CostModel, rng) -> list[int]:
    ks = []
    for _ in range(n):
        method, _, k = planner.plan([1, 2, 3])
        ks.append(k if method == "mtp" else 0)
        if method == "mtp":
            engine.mtp.draft(k)
            accepted = 0
            while accepted < k and rng.random() < acceptance:
                accepted += 1
            planner.record(step("mtp", k, accepted, c.verify(k + 1), k * engine.mtp.seconds_per_token))
        else:
            planner.record(step("none", 0, 0, c.verify(1)))
    return ks


def test_auto_drafts_with_mtp_heads_where_rows_are_cheap():
    """A GPU-like machine: extra verify rows nearly free, a head decode 5% of a
    step. The heads' measured acceptance (degrading with depth) sets k."""
    rng = np.random.default_rng(0)
    engine = mtp_engine(0.0035)
    c = costs(0.07, 0.004)
    planner = Planner(engine, c)
    ks = run_mtp_steps(planner, engine, 200, 0.8, c, rng)
    assert np.mean(ks[-50:]) >= 2
    rates = planner.acceptance["mtp"].rates
    assert rates[0].value > 0.65  # learned from the steps (the prior is 0.6)
    assert "mtp" in c.draft_token_s and abs(c.draft_token_s["mtp"].value - 0.0035) < 1e-6


def test_auto_leaves_mtp_heads_alone_where_rows_cost_like_decodes():
    """This machine's shape (5 rows cost 3x one): a head right 60% of the time
    does not pay, so after the first steps only rare, backed-off probes draft."""
    rng = np.random.default_rng(0)
    engine = mtp_engine(0.01)
    c = costs(0.07, 0.035)
    planner = Planner(engine, c)
    ks = run_mtp_steps(planner, engine, 200, 0.6, c, rng)
    assert sum(k > 0 for k in ks[-100:]) <= 3


def test_mtp_costs_have_no_catch_up():
    c = costs(0.07, 0.02, 0.03)
    c.draft_token_s["mtp"] = c.draft_token_s["draft"]
    assert c.draft("mtp", 3, behind=50) == c.draft("mtp", 3, behind=1) == 3 * 0.03


def curve_costs(curve: dict[int, float]) -> CostModel:
    c = CostModel()
    c.seed(curve, {})
    return c


# A 2-core AVX2 CPU as measured: 4 rows cost about what 3 do, 8 far more than 7.
CPU_CURVE = {1: 0.074, 2: 0.103, 3: 0.131, 4: 0.136, 5: 0.172, 6: 0.204, 7: 0.238, 8: 0.346, 9: 0.363}


def test_every_measured_size_counts_not_a_line_through_a_few():
    c = curve_costs(CPU_CURVE)
    acc = Acceptance([0.9] * 8)
    # k = 3 (4 rows) or k = 6 (7 rows) are the sweet spots; 8 rows is a cliff.
    choice = best_k("lookup", acc, c, 8)
    assert choice.k in (3, 6)
    assert best_k("lookup", acc, c, 8).k != 7


def test_a_slower_level_reprices_sizes_that_were_not_run():
    """A long context makes every step slower. Only plain steps run while it
    grows; a 5-row verify must still be priced at the new level."""
    c = curve_costs(CPU_CURVE)
    for _ in range(30):
        c.record_verify(step("none", 0, 0, CPU_CURVE[1] * 1.5))
    assert abs(c.verify(5) / (CPU_CURVE[5] * 1.5) - 1) < 0.05
    assert abs(c.verify(1) / (CPU_CURVE[1] * 1.5) - 1) < 0.05


def test_a_slow_spell_while_drafting_does_not_price_drafts_out_for_good():
    """Steps of 5 rows run three times slower for a while (another program on
    the cores); then only plain steps run, at normal speed. The 5-row price
    must come back, although no 5-row step ran since."""
    c = curve_costs(CPU_CURVE)
    for _ in range(20):
        c.record_verify(step("lookup", 4, 4, CPU_CURVE[5] * 3))
    assert c.verify(5) > CPU_CURVE[5] * 2
    for _ in range(30):
        c.record_verify(step("none", 0, 0, CPU_CURVE[1]))
    assert c.verify(5) < CPU_CURVE[5] * 1.3  # from 3x: the spell went mostly on the level


def test_a_size_slower_than_calibrated_is_learned():
    """The curve itself moves when one size keeps costing more than the level
    explains (a context where 5 rows take a slower kernel path)."""
    c = curve_costs(CPU_CURVE)
    for _ in range(150):
        c.record_verify(step("none", 0, 0, CPU_CURVE[1]))
        c.record_verify(step("lookup", 4, 4, CPU_CURVE[5] * 1.5))
    assert c.verify(5) > CPU_CURVE[5] * 1.3
    assert c.verify(1) < CPU_CURVE[1] * 1.15


def test_draft_catch_up_follows_its_calibrated_batch_line():
    c = CostModel()
    c.seed(CPU_CURVE, {"draft": 0.031}, {1: 0.031, 4: 0.078, 8: 0.132})
    assert abs(c.draft("draft", 1, behind=4) - 0.078) < 0.005
    assert abs(c.draft("draft", 1, behind=8) - 0.132) < 0.005
    assert abs(c.draft("draft", 3, behind=1) - (0.031 + 2 * 0.031)) < 0.005
