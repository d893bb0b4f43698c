"""The adaptive planner on synthetic cost and acceptance traces: pure logic,
no model. The same planner runs end to end in test_lossless/test_cli."""

from __future__ import annotations

import numpy as np

from localspec.controller import K_MAX, Acceptance, LookupScores, Planner, PlannerSettings, Survival, best_k
from localspec.costs import CostModel
from localspec.drafters import Draft
from localspec.events import Counters, DraftWork, StepEvent
from test_costs import CPU_CURVE, costs, curve_costs


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


class FakeDraftModel:
    """A draft model as the planner sees it: a name and how far behind its cache is."""

    name = "draft"

    def __init__(self):
        self.behind_n = 1

    def behind(self, context):
        return self.behind_n

    def propose(self, *args, **kwargs):
        raise AssertionError("the planner never drafts; the loop does")


class FakeMtp(FakeDraftModel):
    name = "mtp"

    def __init__(self, seconds_per_token: float):
        super().__init__()
        self.behind_n = 0
        self.seconds_per_token = seconds_per_token


class EmptyLookup:
    name = "lookup"

    def propose(self, context, k, sampling, rng, stop_below=0.0):
        return Draft([])

    def behind(self, context):
        return 0


class Rig:
    """A planner with fake drafters, through the same constructor the engine uses."""

    def __init__(self, c: CostModel, drafters=None, lookup=None, method="auto"):
        self.settings = PlannerSettings(method=method)
        self.lookup = lookup or EmptyLookup()
        self.drafters = drafters if drafters is not None else {"draft": FakeDraftModel(), "lookup": self.lookup}
        self.planner = Planner(self.settings, self.drafters, self.lookup, c)


def step(method: str, drafted: int, accepted: int, verify_s: float, draft_s: float = 0.0) -> StepEvent:
    """The event the loop makes of a step; a model drafter's work as the real ones report it."""
    work = {
        "draft": DraftWork(catch_up=(1, 0.01)),
        "mtp": DraftWork(singles=(drafted, draft_s)),
    }.get(method, DraftWork())
    return StepEvent(
        (), (), "", method, drafted, drafted, accepted, draft_s, verify_s, draft_s + verify_s, Counters(),
        source=method if method != "none" else "", ran=method in ("draft", "mtp"), work=work,
    )  # fmt: skip


def test_recovers_after_a_phase_change():
    """Draft model great, then useless (the text changed), then great again."""
    rng = np.random.default_rng(0)
    planner = Rig(costs(0.07, 0.01, 0.01)).planner

    def run(n_steps: int, alpha: float) -> list[int]:
        ks = []
        for _ in range(n_steps):
            method, _, k, _ = planner.plan([1, 2, 3])
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
    rig = Rig(costs(0.07, 0.5, 0.5))  # would never draft if it chose
    rig.settings.method, rig.settings.draft_max = "draft", 3
    assert rig.planner.plan([1]) == ("draft", rig.drafters["draft"], 3, 0.0)
    rig.settings.auto_draft = True
    assert rig.planner.plan([1]).k == 0


def test_the_draft_stop_threshold_is_part_of_the_plan():
    """Chosen by the planner from the costs and handed to propose, not set on the drafter."""
    rig = Rig(costs(0.07, 0.001, 0.001))
    plan = rig.planner.plan([1, 2, 3])
    assert plan.method == "draft" and 0 < plan.stop_below < 0.95


def test_failed_probes_back_off():
    """A draft model that never pays is probed ever more rarely, not every N steps."""
    planner = Rig(costs(0.07, 0.01, 0.01)).planner  # perfect drafts would pay...
    planner.acceptance["draft"] = Acceptance([0.05] * 4)  # ...but these are wrong
    probes = []
    for i in range(1500):
        method, _, k, _ = planner.plan([1])
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
    planner = Rig(costs(0.07, 0.065, 0.035)).planner
    for _ in range(500):
        assert planner.plan([1]).method == "none"
        planner.record(step("none", 0, 0, 0.07))


def test_no_probe_that_would_first_catch_up_a_long_prompt():
    rig = Rig(costs(0.07, 0.01, 0.01))
    rig.drafters["draft"].behind_n = 2000
    for _ in range(300):
        assert rig.planner.plan([1]).method == "none"
        rig.planner.record(step("none", 0, 0, 0.07))


def test_a_model_drafter_that_ran_and_proposed_nothing_counts_as_rejected():
    rig = Rig(costs(0.07, 0.01, 0.01))
    before = rig.planner.acceptance["draft"].at(0)
    rig.planner.record(step("draft", 0, 0, 0.07, 0.01))
    assert rig.planner.acceptance["draft"].at(0) < before


def mtp_rig(seconds_per_token: float, c: CostModel) -> Rig:
    lookup = EmptyLookup()
    return Rig(c, {"mtp": FakeMtp(seconds_per_token), "lookup": lookup}, lookup)


def run_mtp_steps(rig: Rig, n: int, acceptance: float, c: CostModel, rng) -> list[int]:
    ks = []
    spt = rig.drafters["mtp"].seconds_per_token
    for _ in range(n):
        method, _, k, _ = rig.planner.plan([1, 2, 3])
        ks.append(k if method == "mtp" else 0)
        if method == "mtp":
            accepted = 0
            while accepted < k and rng.random() < acceptance:
                accepted += 1
            rig.planner.record(step("mtp", k, accepted, c.verify(k + 1), k * spt))
        else:
            rig.planner.record(step("none", 0, 0, c.verify(1)))
    return ks


def test_auto_drafts_with_mtp_heads_where_rows_are_cheap():
    """A GPU-like machine: extra verify rows nearly free, a head decode 5% of a
    step. The heads' measured acceptance (degrading with depth) sets k."""
    rng = np.random.default_rng(0)
    c = costs(0.07, 0.004)
    rig = mtp_rig(0.0035, c)
    ks = run_mtp_steps(rig, 200, 0.8, c, rng)
    assert np.mean(ks[-50:]) >= 2
    rates = rig.planner.acceptance["mtp"].rates
    assert rates[0].value > 0.65  # learned from the steps (the prior is 0.6)
    assert "mtp" in c.draft_token_s and abs(c.draft_token_s["mtp"].value - 0.0035) < 1e-6


def test_auto_leaves_mtp_heads_alone_where_rows_cost_like_decodes():
    """This machine's shape (5 rows cost 3x one): a head right 60% of the time
    does not pay, so after the first steps only rare, backed-off probes draft."""
    rng = np.random.default_rng(0)
    c = costs(0.07, 0.035)
    rig = mtp_rig(0.01, c)
    ks = run_mtp_steps(rig, 200, 0.6, c, rng)
    assert sum(k > 0 for k in ks[-100:]) <= 3


def test_mtp_costs_have_no_catch_up():
    c = costs(0.07, 0.02, 0.03)
    c.draft_token_s["mtp"] = c.draft_token_s["draft"]
    assert c.draft("mtp", 3, behind=50) == c.draft("mtp", 3, behind=1) == 3 * 0.03


def test_every_measured_size_counts_not_a_line_through_a_few():
    c = curve_costs(CPU_CURVE)
    acc = Acceptance([0.9] * 8)
    # k = 3 (4 rows) or k = 6 (7 rows) are the sweet spots; 8 rows is a cliff.
    choice = best_k("lookup", acc, c, 8)
    assert choice.k in (3, 6)
    assert best_k("lookup", acc, c, 8).k != 7


def test_lookup_proposals_are_scored_against_the_text_that_follows():
    scores = LookupScores()
    context = [1, 2, 3]
    scores.propose(context, [5, 6, 7], "lookup4")
    assert scores.resolve(context) == []  # nothing known yet
    context += [5, 6]
    assert scores.resolve(context) == [("lookup4", 0, 2, False)]  # positions 0 and 1 agree
    context.append(9)
    assert scores.resolve(context) == [("lookup4", 2, 2, True)]  # position 2 does not
    scores.propose(context, [1, 1], "lookup2")
    scores.propose(context, [7, 1], "lookup5")
    context += [1, 1, 4]
    assert scores.resolve(context) == [("lookup2", 0, 2, False), ("lookup5", 0, 0, True)]
    assert scores.resolve(context) == []  # each position counts once
    scores.propose(context, [8], "lookup3")
    assert scores.resolve([1, 2, 3, 5, 6, 9, 1, 1, 4, 8]) == []  # another reply: dropped


def observe_proposal(s: Survival, agree: int) -> None:
    """Score one K_MAX-token proposal that agrees with the text on its first `agree` tokens."""
    s.observe(0, min(agree, K_MAX), agree < K_MAX)


def test_lookup_survival_learns_every_depth_from_every_proposal():
    """After a copying text (long agreements), a text of short matches must
    bring the deep positions down too, though no draft reached them: within
    40 proposals (one is scored every step that matches)."""
    s = Survival(0.5)
    for _ in range(30):
        observe_proposal(s, K_MAX)
    assert s.expected_tokens(6) > 6.5
    for _ in range(40):
        observe_proposal(s, 1)
    assert abs(s.expected_tokens(1) - 2.0) < 0.05  # the first token still agrees
    assert s.expected_tokens(6) - s.expected_tokens(1) < 0.2  # next to nothing beyond it
    # The conditional rates of `Acceptance` keep deep positions where the copying left them.
    a = Acceptance([0.5] * K_MAX)
    for _ in range(30):
        a.record(K_MAX, K_MAX)
    for _ in range(40):
        a.record(K_MAX, 1)
    assert a.at(3) > 0.9


def test_the_planner_puts_back_what_it_had_learned():
    """estimates/restore: the drafters' acceptance as it was, the machine's costs left alone."""
    truth = list(range(10_000))
    lookup = ScriptedLookup(truth)
    planner = Rig(curve_costs(ZEN4_CURVE), {"lookup": lookup}, lookup).planner
    lookup_steps(planner, lookup, truth[:10], ZEN4_CURVE, 10)
    saved = planner.estimates()
    before = planner.acceptance["lookup6"].expected(8)
    lookup.copying = False
    lookup_steps(planner, lookup, truth[:10], ZEN4_CURVE, 20)
    assert planner.acceptance["lookup6"].expected(8) != before
    planner.restore(saved)
    assert planner.acceptance["lookup6"].expected(8) == before
    lookup_steps(planner, lookup, truth[:10], ZEN4_CURVE, 5)  # learning again does not touch what was saved
    planner.restore(saved)
    assert planner.acceptance["lookup6"].expected(8) == before


class ScriptedLookup:
    """Proposes the true continuation (a copying phase) or a wrong one."""

    name = "lookup"

    def __init__(self, truth: list[int]):
        self.truth = truth
        self.copying = True
        self.last_match_n = 6

    def propose(self, context, k, sampling, rng, stop_below=0.0):
        future = self.truth[len(context) : len(context) + k]
        tokens = future if self.copying else [t + 1 for t in future]
        return Draft(tokens, source="lookup", match_n=self.last_match_n)

    def behind(self, context):
        return 0


def lookup_steps(planner: Planner, lookup: ScriptedLookup, context: list[int], curve: dict, n_steps: int) -> list[int]:
    """The loop's way, `n_steps` times: plan, draft with `lookup`, keep the
    agreed prefix plus the truth's next token (in place), record. Returns the
    draft lengths."""
    truth, ks = lookup.truth, []
    for _ in range(n_steps):
        method, _, k, _ = planner.plan(context)
        draft = lookup.propose(context, k, None, None).tokens if method == "lookup" else []
        accepted = 0
        while accepted < len(draft) and draft[accepted] == truth[len(context) + accepted]:
            accepted += 1
        context.extend(truth[len(context) : len(context) + accepted + 1])
        planner.record(step(method, len(draft), accepted, curve[len(draft) + 1]))
        ks.append(len(draft))
    return ks


def test_auto_follows_the_text_in_and_out_of_copying_without_probes():
    """Lookup drafts pay while the text copies, stop when it does not, and
    resume as soon as it copies again: plain steps score the proposals too.
    (Here every proposal turns wrong at once. Real copies miss now and then,
    and forgetting slower pays on them (LOOKUP_DECAY), so a turn like this
    one costs a dozen rejected drafts before they stop.)"""
    truth = list(range(10_000))
    lookup = ScriptedLookup(truth)
    planner = Rig(curve_costs(CPU_CURVE), {"lookup": lookup}, lookup).planner
    context = truth[:10]

    def run(n_steps: int, copying: bool) -> list[int]:
        lookup.copying = copying
        return lookup_steps(planner, lookup, context, CPU_CURVE, n_steps)

    copy1 = run(40, True)
    novel = run(60, False)
    copy2 = run(40, True)
    assert np.mean(copy1[-20:]) >= 3
    assert sum(k > 0 for k in novel[-40:]) == 0, "kept drafting wrong proposals"
    assert sum(k > 0 for k in novel[:20]) <= 15
    assert all(k >= 3 for k in copy2[6:]), "did not resume when the text copied again"


def test_draft_plus_lookup_with_automatic_length_weighs_its_members():
    """Lookup first when it has a proposal, else the draft model; k from their estimates."""
    from localspec.drafters.combined import FirstOfDrafter

    truth = list(range(10_000))
    lookup, model = ScriptedLookup(truth), FakeDraftModel()
    drafters = {"draft": model, "lookup": lookup, "draft+lookup": FirstOfDrafter("draft+lookup", [lookup, model])}
    rig = Rig(costs(0.07, 0.001, 0.001), drafters, lookup, method="draft+lookup")  # drafting pays
    rig.settings.auto_draft = True
    assert rig.planner.plan(truth[:10]).method == "lookup"
    rig.planner.lookup = EmptyLookup()  # no match: nothing to propose
    plan = rig.planner.plan(truth[:12])
    assert (plan.method, plan.drafter) == ("draft", model) and plan.k > 0


def test_auto_limit_caps_what_the_planner_drafts():
    rig = Rig(costs(0.07, 0.001, 0.001))
    assert rig.planner.plan([1, 2, 3]).k > 2
    rig.settings.auto_limit = 2
    assert rig.planner.plan([1, 2, 3]).k == 2
    rig.settings.auto_limit = 0
    assert rig.planner.plan([1, 2, 3])[:3] == ("none", None, 0)


def test_a_new_drafter_needs_no_planner_edits():
    """Any model drafter in the mapping is weighed by auto and learned from its events."""
    c = costs(0.07, 0.001, 0.001)
    c.draft_token_s["heads2"] = c.draft_token_s["draft"]
    other = FakeMtp(0.001)
    other.name = "heads2"
    lookup = EmptyLookup()
    rig = Rig(c, {"heads2": other, "lookup": lookup}, lookup)
    plan = rig.planner.plan([1, 2, 3])
    assert plan.method == "heads2" and plan.k > 0
    event = StepEvent((), (), "", "heads2", plan.k, plan.k, 0, 0.001, 0.07, 0.071, Counters(),
                      source="heads2", ran=True, work=DraftWork(singles=(plan.k, 0.001 * plan.k)))  # fmt: skip
    before = rig.planner.acceptance["heads2"].at(0)
    rig.planner.record(event)
    assert rig.planner.acceptance["heads2"].at(0) < before


# The Xeon's shape (AVX-512 VNNI, 2 cores): 1 row 65 ms, 4 rows 103 ms, 9 rows 202 ms, rising ~20 ms a row.
FLAT_CURVE = {n: 0.065 + 0.0155 * (n - 1) for n in range(1, 18)}
# The Zen 4 EPYC's (issue 26): n rows cost nearly n steps up to 12, then 16 rows
# less than 12 (a full tile of llama.cpp's x86 Q4_K gemm), 32 and 64 cheaper still per row.
ZEN4_CURVE = {1: 0.030, 2: 0.054, 3: 0.075, 4: 0.095, 5: 0.114, 6: 0.14, 7: 0.17, 8: 0.214, 9: 0.228,
              12: 0.262, 16: 0.255, 24: 0.379, 32: 0.423, 48: 0.594, 64: 0.739}  # fmt: skip


def test_lookup_drafts_as_long_as_the_longest_measured_size():
    from localspec.controller import K_LONG, draft_lengths, lookup_cap

    assert lookup_cap(curve_costs(CPU_CURVE)) == K_MAX
    assert lookup_cap(curve_costs(FLAT_CURVE)) == 16
    assert lookup_cap(curve_costs(ZEN4_CURVE)) == K_LONG == 63
    # Past K_MAX only the measured sizes are choices: between them the curve is not a line.
    assert draft_lengths(curve_costs(ZEN4_CURVE), 63) == list(range(1, 9)) + [11, 15, 23, 31, 47, 63]
    assert draft_lengths(curve_costs(ZEN4_CURVE), 20) == list(range(1, 9)) + [11, 15]


def copy_run(curve: dict[int, float], n_steps: int = 40) -> list[int]:
    """Draft lengths the planner picks over a text that copies its past exactly."""
    truth = list(range(10_000))
    lookup = ScriptedLookup(truth)
    planner = Rig(curve_costs(curve), {"lookup": lookup}, lookup).planner
    return lookup_steps(planner, lookup, truth[:10], curve, n_steps)


def test_a_long_copy_on_a_flat_curve_drafts_past_k_max():
    assert max(copy_run(FLAT_CURVE)[-10:]) > K_MAX


def test_a_long_copy_on_a_curve_flat_at_16_drafts_whole_tiles():
    """Where 9 rows cost 7.6 steps, a long right copy is worth a 64-row verify
    (24.6 steps for 64 tokens): the planner drafts 63, not 8, and never a
    length whose size was not measured."""
    ks = copy_run(ZEN4_CURVE)
    assert all(k <= K_MAX or k + 1 in ZEN4_CURVE for k in ks)
    assert ks[-10:] == [63] * 10


def test_after_a_long_copy_a_new_reply_starts_with_short_drafts():
    """Acceptance learned while copying says little about the next text: a
    long draft must follow a long agreement in this reply (slow start), so a
    reply whose matches are wrong never pays for a 64-row verify."""
    truth = list(range(10_000))
    lookup = ScriptedLookup(truth)
    planner = Rig(curve_costs(ZEN4_CURVE), {"lookup": lookup}, lookup).planner

    def reply(copying: bool, n_steps: int) -> list[int]:
        lookup.copying = copying
        return lookup_steps(planner, lookup, truth[:10], ZEN4_CURVE, n_steps)  # a new list: a new reply

    copied = reply(True, 30)
    assert copied[-1] == 63 and max(copied[:2]) <= K_MAX  # it ramped up, from short drafts
    wrong = reply(False, 20)
    assert max(wrong) <= K_MAX
    assert sum(ZEN4_CURVE[k + 1] for k in wrong) < 2 * 20 * ZEN4_CURVE[1]


def test_long_matches_are_trusted_apart_from_short_ones():
    """A text whose 6-token matches lead nowhere, then copies a passage (a
    30-token match, as an edit re-emitting unchanged code shows): the copy is
    drafted from its first steps, and long, since what the short matches
    taught is kept apart from the long ones (ngram-mod's signal)."""
    truth = list(range(10_000))
    lookup = ScriptedLookup(truth)
    planner = Rig(curve_costs(ZEN4_CURVE), {"lookup": lookup}, lookup).planner
    context = truth[:10]
    lookup.copying, lookup.last_match_n = False, 6
    lookup_steps(planner, lookup, context, ZEN4_CURVE, 40)
    assert planner.plan(context).k == 0  # short matches have stopped paying
    lookup.copying, lookup.last_match_n = True, 30
    copied = lookup_steps(planner, lookup, context, ZEN4_CURVE, 25)
    assert all(k > 0 for k in copied[:3]) and copied[-1] == 63


def test_a_reply_that_begins_inside_a_long_match_drafts_long_at_once():
    """Slow start counts the copy the match already shows: a new reply whose
    last 30 tokens repeat the source (a function's signature and docstring
    written out again) has been copying for 30 tokens, drafted or not, so its
    first draft may pass K_MAX; a 6-token match still starts short."""
    truth = list(range(10_000))
    lookup = ScriptedLookup(truth)
    planner = Rig(curve_costs(ZEN4_CURVE), {"lookup": lookup}, lookup).planner
    lookup.last_match_n = 30
    assert planner.plan(truth[:40]).k > K_MAX
    lookup.last_match_n = 6
    assert 0 < planner.plan(truth[:50]).k <= K_MAX


def test_a_short_right_copy_on_the_zen4_curve_takes_a_whole_tile():
    """A 15-token proposal that is always right: 16 rows for 8.5 steps beat any
    shorter draft (12 rows cost more than 16). With 14 it takes the longest
    measured size that fits, 12 rows, never an unmeasured 13 or 14."""
    from localspec.controller import Survival, best_k

    sure = Survival(0.999)
    assert best_k("lookup", sure, curve_costs(ZEN4_CURVE), 15).k == 15
    assert best_k("lookup", sure, curve_costs(ZEN4_CURVE), 14).k == 11


def test_calibration_fills_in_a_long_size_only_where_a_right_draft_could_pay():
    from localspec import calibrate

    entry = {str(n): s for n, s in ZEN4_CURVE.items() if n <= 9}
    assert calibrate._long_rows(entry, 512) == (16, 32, 64)  # the tiles first, on every machine
    assert calibrate._long_rows(entry, 40) == (16, 32)  # what a batch and context can hold
    entry.update({"16": 0.255, "32": 0.423, "64": 0.739})
    assert calibrate._long_rows(entry, 512) == (12, 24, 48)
    # Where every row costs a step, a 12-row verify cannot pay at 9 rows' price.
    steep = {str(n): 0.03 * n for n in (*range(1, 10), 16, 32, 64)}
    assert calibrate._long_rows(steep, 512) == ()
