"""Choosing, before every verify step, which drafter to ask and for how many tokens.

Speculation is not free here: verifying n rows costs more than one, and a
draft model costs a decode per token. With acceptance α_i (the chance that
draft position i is accepted given the ones before it were), a step that
drafts k tokens yields on average

    E[tokens](k) = 1 + Σ_{i=1..k} Π_{j=1..i} α_j        (the target's own token is the 1)

and costs  draft(k) + verify(k + 1)  seconds. The planner picks the drafter
and k (0 = plain decoding, E = 1, cost = verify(1)) with the highest
E / cost, from costs and acceptance measured on this machine during this
reply. Because k = 0 is always a candidate and its cost is measured, the
choice can only fall below plain decoding when the estimates are wrong, and
the estimates follow what the last steps actually did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from localspec.drafters import Drafter
from localspec.events import StepEvent

LOOKUP_BUCKETS = 6  # match lengths 2..5 apart, 6 and longer together
K_MAX = 8  # a verify batch of 9 rows: beyond that acceptance of a long tail is negligible
DECAY = 0.85  # weight of the past in each running estimate: adapts within a reply
CURVE_DECAY = 0.98  # the verify curve's shape changes slowly (see CostModel)
PROBE_EVERY = 48  # steps a sidelined draft model waits before it is tried again: a probe
# pays for catching the draft cache up on every token since, so it must be rare
PROBE_MAX = 1024  # the longest wait after repeated failed probes
PROBE_BUDGET_STEPS = 4  # a probe may cost at most this many plain steps


class RunningMean:
    """Exponentially weighted mean with a prior that fades as data arrives."""

    def __init__(self, prior: float, prior_weight: float = 1.0, decay: float = DECAY):
        self.total = prior * prior_weight
        self.weight = prior_weight
        self.decay = decay

    def add(self, value: float, weight: float = 1.0) -> None:
        self.total = self.total * self.decay + value * weight
        self.weight = self.weight * self.decay + weight

    @property
    def value(self) -> float:
        return self.total / self.weight


class LinearFit:
    """seconds ≈ a + b·n by exponentially weighted least squares."""

    def __init__(self, a: float, b: float):
        # A prior of two pseudo-points on the line a + b·n, at n = 1 and n = 8.
        self.sums = [0.0] * 5  # Σw, Σn, Σs, Σn², Σn·s
        for n in (1, 8):
            self.add(n, a + b * n, decay=1.0)

    @classmethod
    def through(cls, points: dict[int, float]) -> "LinearFit":
        """The least-squares line through measured (n, seconds) points, as the prior."""
        fit = cls(0.0, 0.0)
        fit.sums = [0.0] * 5
        for n, s in points.items():
            fit.add(n, s, decay=1.0)
        a, b = fit.a_b()
        return cls(a, b) if len(points) > 1 else cls(points[min(points)], 0.0)

    def add(self, n: float, s: float, decay: float = DECAY) -> None:
        w, sn, ss, snn, sns = (x * decay for x in self.sums)
        self.sums = [w + 1, sn + n, ss + s, snn + n * n, sns + n * s]

    def a_b(self) -> tuple[float, float]:
        w, sn, ss, snn, sns = self.sums
        det = w * snn - sn * sn
        b = (w * sns - sn * ss) / det if det > 1e-12 else 0.0
        return (ss - b * sn) / w, b

    def __call__(self, n: float) -> float:
        a, b = self.a_b()
        return max(a + b * n, 0.0)


@dataclass
class CostModel:
    """Seconds per verify of n rows and per draft-model decode, as measured.

    A verify costs `level · curve(n)`. The curve (`verify_s`, seconds by row
    count on a short context and a quiet machine) is the shape of the
    machine's batched matmuls, and it is not a straight line: on a 2-core
    AVX2 CPU llama.cpp's repacked kernels run four rows for what three cost,
    and eight for far more than seven. It is calibrated at load for every row
    count the planner may choose and drifts only slowly. The level is how
    much slower every step is right now than the curve says: a longer context
    (attention over more cached tokens), another program on the cores, a GPU
    clocking down. Every step moves it, whatever its row count, so a draft
    length the planner stopped choosing is priced at today's speed, not at
    the worst moment it was last tried. (With one running mean per row count
    instead, a slow spell while drafting would price drafts out for good:
    they would never run again to be measured.)

    The draft model's cost has two parts: catching its cache up with the
    context (a batch of the tokens it has not seen: after plain steps there can
    be many) and one single-token decode per further drafted token.
    """

    verify_s: dict[int, RunningMean] = field(default_factory=dict)
    draft_token_s: dict[str, RunningMean] = field(default_factory=dict)
    catch_up: LinearFit | None = None
    level: RunningMean = field(default_factory=lambda: RunningMean(1.0, prior_weight=1.0))

    def seed(
        self, verify_s: dict[int, float], draft_token_s: dict[str, float], draft_batch_s: dict[int, float] | None = None
    ) -> None:
        for n, s in verify_s.items():
            # Weighted as a curve point that has seen many steps: one step moves it
            # by 1 - CURVE_DECAY of the way, however new the session is.
            self.verify_s[n] = RunningMean(s, prior_weight=1 / (1 - CURVE_DECAY), decay=CURVE_DECAY)
        for name, s in draft_token_s.items():
            self.draft_token_s[name] = RunningMean(s, prior_weight=2.0)
        if draft_batch_s and len(draft_batch_s) > 1:
            self.catch_up = LinearFit.through(draft_batch_s)
        elif "draft" in draft_token_s:
            # A batch of n tokens costs about one decode plus a fraction per extra token.
            s = draft_token_s["draft"]
            self.catch_up = LinearFit(s * 0.8, s * 0.2)

    def verify(self, n_rows: int) -> float:
        return self.level.value * self.curve(n_rows)

    def curve(self, n_rows: int) -> float:
        if n_rows in self.verify_s:
            return self.verify_s[n_rows].value
        known = sorted(self.verify_s)
        if not known:
            return 0.07 * (1 + 0.5 * (n_rows - 1))  # only until the first measured step
        # Linear through the nearest measured sizes: verify cost grows ~linearly in rows.
        lo = max((n for n in known if n < n_rows), default=None)
        hi = min((n for n in known if n > n_rows), default=None)
        if lo is None:
            lo, hi = hi, (known[1] if len(known) > 1 else None)
        if hi is None:
            lo, hi = (known[-2], known[-1]) if len(known) > 1 else (known[-1], None)
        if hi is None or hi == lo:
            return self.verify_s[lo].value * n_rows / lo
        a, b = self.verify_s[lo].value, self.verify_s[hi].value
        return max(a + (b - a) * (n_rows - lo) / (hi - lo), 1e-4)

    def draft(self, name: str, k: int, behind: int = 1) -> float:
        if k == 0 or name == "lookup":
            return 0.0
        per = self.draft_token_s.get(name)
        single = per.value if per else self.verify(1) * 0.5
        if name != "draft":
            return single * k  # MTP: its cache is fed along with the target's, never behind
        first = self.catch_up(behind) if self.catch_up else single * behind
        return first + single * (k - 1)

    def record_verify(self, event: StepEvent) -> None:
        n, s = event.drafted + 1, event.verify_s
        if n not in self.verify_s:
            # First sight of this size: its curve point is this step at the current level.
            self.verify_s[n] = RunningMean(s / self.level.value, 1.0, decay=CURVE_DECAY)
            return
        # The level moves first and fast, the curve point slowly and only by what
        # the level does not explain, so a common slowdown lands on the level.
        self.level.add(s / self.verify_s[n].value)
        self.verify_s[n].add(s / self.level.value)

    def snapshot(self) -> dict:
        """The current estimates as plain numbers (the benchmark records them)."""
        return {
            "verify_s": {n: self.verify(n) for n in range(1, K_MAX + 2)},
            "level": self.level.value,
            "draft_token_s": {name: m.value for name, m in self.draft_token_s.items()},
            "draft_catch_up": list(self.catch_up.a_b()) if self.catch_up else None,
        }

    def record_draft_model(self, catch_up: tuple[int, float], singles: tuple[int, float]) -> None:
        if self.catch_up is None:
            self.catch_up = LinearFit(catch_up[1], 0.0)
        self.catch_up.add(*catch_up)
        self.record_draft_tokens("draft", singles)

    def record_draft_tokens(self, name: str, decodes: tuple[int, float]) -> None:
        n, s = decodes
        if n:
            self.draft_token_s.setdefault(name, RunningMean(s / n, 0.0)).add(s / n, weight=n)


class Acceptance:
    """Per drafter, per position: the chance position i is accepted given i-1 were."""

    def __init__(self, prior: Sequence[float]):
        self.rates = [RunningMean(p, prior_weight=2.0) for p in prior]

    def at(self, i: int) -> float:
        return self.rates[min(i, len(self.rates) - 1)].value

    def expected_tokens(self, k: int) -> float:
        total, run = 1.0, 1.0
        for i in range(k):
            run *= self.at(i)
            total += run
        return total

    def record(self, drafted: int, accepted: int) -> None:
        # Position i was reached iff i < drafted and all before it were accepted.
        for i in range(min(drafted, accepted + 1)):
            if i >= len(self.rates):
                self.rates.append(RunningMean(self.rates[-1].value, 1.0))
            self.rates[i].add(1.0 if i < accepted else 0.0)


@dataclass
class Choice:
    method: str
    k: int
    rate: float  # expected tokens per second


def best_k(name: str, acc: Acceptance, costs: CostModel, k_cap: int, behind: int = 1) -> Choice:
    best = Choice("none", 0, 1.0 / costs.verify(1))
    for k in range(1, k_cap + 1):
        rate = acc.expected_tokens(k) / (costs.draft(name, k, behind) + costs.verify(k + 1))
        if rate > best.rate:
            best = Choice(name, k, rate)
    return best


class Planner:
    """The engine's step planner: fixed settings, or chosen from measurements.

    Every step is recorded, whatever chose it, so the estimates are warm when
    the user switches to `auto` or to automatic draft length.
    """

    def __init__(self, engine, costs: CostModel | None = None):
        self.engine = engine
        self.costs = costs or CostModel()
        # Priors: lookup is right more often at short range; a same-family draft model
        # agrees with its target most of the time on the first tokens.
        self.acceptance = {
            "draft": Acceptance([0.7, 0.7, 0.65, 0.6]),
            "mtp": Acceptance([0.6, 0.5, 0.4]),
        }
        # Lookup acceptance depends mostly on how long the matched n-gram was.
        for n in range(2, LOOKUP_BUCKETS + 1):
            self.acceptance[f"lookup{n}"] = Acceptance([0.3 + 0.1 * n] * 2)
        self.idle_steps: dict[str, int] = {}
        self.probe_after: dict[str, int] = {}
        self._probing = False
        self._proposals_at_plan: dict[str, int] = {}  # model drafters' proposal counts when the step began

    def plan(self, context: Sequence[int]) -> tuple[str, Drafter | None, int]:
        eng = self.engine
        method = eng.method
        self._proposals_at_plan = {
            name: d.proposals for name, d in (("draft", eng.draft_model), ("mtp", eng.mtp)) if d is not None
        }
        if method == "none":
            return "none", None, 0
        for model_drafter in (eng.draft_model, eng.mtp):
            if model_drafter is not None:
                model_drafter.cum_p_min = 0.0
        if method != "auto" and not eng.auto_draft:
            return method, eng.drafter_for(method), eng.draft_max
        candidates = [m for m in ("lookup", "draft", "mtp") if m in eng.methods] if method == "auto" else [method]
        choice = Choice("none", 0, 1.0 / self.costs.verify(1))
        for name in candidates:
            c = self._choose(name, context)
            if c.rate > choice.rate:
                choice = c
        probe = self._probe(candidates, choice, context)
        if probe is not None:
            choice = probe
        if choice.k == 0:
            return "none", None, 0
        if choice.method in ("draft", "mtp"):
            self._tune_draft_stop(choice.method)
        return choice.method, eng.drafter_for(choice.method), choice.k

    def _choose(self, name: str, context: Sequence[int]) -> Choice:
        if name == "lookup":
            # The proposal is free to compute: only its length is in question.
            lookup = self.engine.lookup
            available = len(lookup.propose(context, K_MAX, None, None).tokens)
            if not available:
                return Choice("none", 0, 0.0)
            return best_k(name, self._lookup_acceptance(lookup.last_match_n), self.costs, available)
        behind = self.engine.draft_model.behind(context) if name == "draft" else 1
        return best_k(name, self.acceptance[name], self.costs, K_MAX, behind)

    def _lookup_acceptance(self, match_n: int) -> Acceptance:
        return self.acceptance[f"lookup{min(max(match_n, 2), LOOKUP_BUCKETS)}"]

    def _probe(self, candidates: list[str], choice: Choice, context: Sequence[int]) -> Choice | None:
        """After a drafter has been passed over for a while, try it once with a
        short draft: its acceptance may have changed with the text. Each probe
        that does not win the drafter back doubles the wait (a probe of the
        draft model pays for catching up on every token since the last one)."""
        for name in candidates:
            if name == "lookup":
                continue  # its proposal is free to inspect every step
            wait = self.probe_after.setdefault(name, PROBE_EVERY)
            if name == choice.method:
                self.idle_steps[name] = 0
                self.probe_after[name] = PROBE_EVERY if not self._probing else wait
                continue
            self.idle_steps[name] = self.idle_steps.get(name, 0) + 1
            if self.idle_steps[name] >= wait and self._could_pay(name) and self._cheap_to_try(name, context):
                self.idle_steps[name] = 0
                self.probe_after[name] = min(wait * 2, PROBE_MAX)
                self._probing = True
                return Choice(name, 2, 0.0)
        self._probing = False
        return None

    def _could_pay(self, name: str) -> bool:
        """Whether this drafter beats plain decoding even if every token were accepted.

        Where verification and drafting are this expensive (a CPU where k+1 rows
        cost nearly k+1 decodes), no acceptance rate can make it pay, and a probe
        would only buy a catch-up of the draft cache for nothing.
        """
        perfect = Acceptance([1.0])
        return best_k(name, perfect, self.costs, K_MAX).k > 0

    def _cheap_to_try(self, name: str, context: Sequence[int]) -> bool:
        """A probe after a long prompt would first decode all of it with the draft
        model (seconds on a CPU): only probe when catching up costs a few steps."""
        behind = self.engine.draft_model.behind(context) if name == "draft" else 1
        return self.costs.draft(name, 1, behind) <= PROBE_BUDGET_STEPS * self.costs.verify(1)

    def _tune_draft_stop(self, name: str) -> None:
        # Drafting one more token pays if the chance that it and all before it are
        # accepted, times the plain cost of a token, exceeds what it costs to draft and
        # verify it. The drafter's own running probability stands in for that chance.
        c = self.costs
        marginal = c.draft(name, 1) + max(c.verify(3) - c.verify(2), 0.0)
        drafter = self.engine.mtp if name == "mtp" else self.engine.draft_model
        drafter.cum_p_min = min(0.95, marginal / c.verify(1))

    def record(self, event: StepEvent) -> None:
        self.costs.record_verify(event)
        dm, mtp = self.engine.draft_model, self.engine.mtp
        before = self._proposals_at_plan
        used_draft_model = dm is not None and dm.proposals != before.get("draft", dm.proposals)
        used_mtp = mtp is not None and mtp.proposals != before.get("mtp", mtp.proposals)
        if used_draft_model:
            self.costs.record_draft_model(dm.last_catch_up, dm.last_singles)
        if used_mtp:
            self.costs.record_draft_tokens("mtp", mtp.last_draft)
        if (used_draft_model or used_mtp) and not event.drafted:
            # Asked, ran, then too unsure to propose anything: as costly as a
            # rejected token, and counted as one so the planner stops asking.
            self.acceptance["draft" if used_draft_model else "mtp"].record(1, 0)
        if event.drafted:
            if used_draft_model:
                key = "draft"
            elif used_mtp:
                key = "mtp"
            elif event.method in ("lookup", "draft+lookup"):
                key = f"lookup{min(max(self.engine.lookup.last_match_n, 2), LOOKUP_BUCKETS)}"
            else:
                key = event.method
            self.acceptance[key].record(event.drafted, event.accepted)
