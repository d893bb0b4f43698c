"""Choosing, before every verify step, which drafter to ask and for how many tokens.

Speculation is not free here: verifying n rows costs more than one, and a
draft model costs a decode per token. With acceptance α_i (the chance that
draft position i is accepted given the ones before it were), a step that
drafts k tokens yields on average

    E[tokens](k) = 1 + Σ_{i=1..k} Π_{j=1..i} α_j        (the target's own token is the 1)

(for lookup, whose proposals are scored every step, the products are
estimated directly: S_i, the chance a proposal agrees on its first i tokens)
and costs  draft(k) + verify(k + 1)  seconds (localspec/costs.py). The planner picks the drafter
and k (0 = plain decoding, E = 1, cost = verify(1)) with the highest
E / cost, from costs and acceptance measured on this machine during this
reply. Because k = 0 is always a candidate and its cost is measured, the
choice can only fall below plain decoding when the estimates are wrong, and
the estimates follow what the last steps actually did.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from localspec.costs import CostModel, RunningMean
from localspec.drafters import Drafter, StepPlan
from localspec.events import StepEvent

# Lookup's acceptance is learned per group of match lengths (the group's
# least length): 2..5 apart, then 6-11, 12-23 and 24 or longer. A copy in
# progress shows as a long match (llama.cpp's ngram-mod waits for 24 tokens
# before it drafts 48-64), and on a steep verify curve only such a copy pays
# a long draft, so the long matches must not share estimates with the 6-token ones.
LOOKUP_BUCKETS = (2, 3, 4, 5, 6, 12, 24)
LOOKUP_PRIORS = {2: 0.5, 3: 0.6, 4: 0.7, 5: 0.8, 6: 0.9, 12: 0.92, 24: 0.95}
K_MAX = 8  # a verify batch of 9 rows: beyond that a model drafter's long tail is rarely accepted
# Lookup may go on to this where calibration measured the rows (calibrate.py
# prices 16, 32 and 64 rows on every machine, and sizes between where a right
# draft could pay): a quoted block can be copied for dozens of tokens, and on a
# CPU the verify curve is not a line. llama.cpp's repacked x86 kernels work in
# 16-row tiles, so 16 rows can cost less than 12, and 64 rows verify like a
# small prefill, for far fewer than 64 single steps.
K_LONG = 63
# How fast lookup's estimates forget (per proposal; it is scored every step
# it matches, used or not: LookupScores). Slow forgetting pays on real
# copies, which miss now and then and go on; its price is about a dozen
# rejected drafts when a text stops copying all at once. Weighed by
# replaying the planner on 358 bench texts from three CPUs
# (scripts/planner_replay.py, docs/benchmarks.md): 0.9 beat the 0.7 it had
# been by 1% (code edits +1.7%, code generation +2.9%); 0.8 and 0.95 fell between.
LOOKUP_DECAY = 0.9
PROBE_EVERY = 48  # steps a sidelined draft model waits before it is tried again: a probe
# pays for catching the draft cache up on every token since, so it must be rare
PROBE_MAX = 1024  # the longest wait after repeated failed probes
PROBE_BUDGET_STEPS = 4  # a probe may cost at most this many plain steps


def lookup_cap(costs: CostModel) -> int:
    """The longest lookup draft: the longest whose verify size is measured, at least K_MAX."""
    return max([K_MAX] + [n - 1 for n in costs.verify_s if n - 1 <= K_LONG])


def draft_lengths(costs: CostModel, cap: int) -> list[int]:
    """The draft lengths the planner weighs, up to `cap`: every one up to
    K_MAX, and past it only those whose verify size was measured. Between two
    measured sizes the curve is not a line (a size one row past a tile pays a
    whole extra pass), so a length priced by interpolation is priced wrong."""
    return [k for k in range(1, cap + 1) if k <= K_MAX or k + 1 in costs.verify_s]


def lookup_bucket(match_n: int) -> int:
    """The match-length group whose acceptance estimates a lookup proposal uses."""
    return max(b for b in LOOKUP_BUCKETS if b <= max(match_n, 2))


class Acceptance:
    """Per drafter, per position: the chance position i is accepted given i-1 were."""

    def __init__(self, prior: Sequence[float]):
        self.rates = [RunningMean(p, prior_weight=2.0) for p in prior]

    def at(self, i: int) -> float:
        return self.rates[min(i, len(self.rates) - 1)].value

    def expected_tokens(self, k: int) -> float:
        return self.expected(k)[k]

    def expected(self, k_cap: int) -> list[float]:
        """E[tokens](k) for k = 0..k_cap."""
        out, run = [1.0], 1.0
        for i in range(k_cap):
            run *= self.at(i)
            out.append(out[-1] + run)
        return out

    def record(self, drafted: int, accepted: int) -> None:
        # Position i was reached iff i < drafted and all before it were accepted.
        for i in range(min(drafted, accepted + 1)):
            self.observe(i, i < accepted)

    def observe(self, i: int, accepted: bool) -> None:
        """Position i was reached (all before it accepted) and was, or was not, accepted."""
        while i >= len(self.rates):
            self.rates.append(RunningMean(self.rates[-1].value, 1.0))
        self.rates[i].add(1.0 if accepted else 0.0)


class Survival:
    """For lookup: S_i, the chance a proposal agrees with the text on at least
    its first i tokens, so E[tokens](k) = 1 + Σ_{i=1..k} S_i.

    Lookup proposals are scored every step (LookupScores), and each one
    updates every S_i exactly once, so a deep position is as fresh as the
    first. (The per-position conditional rates of `Acceptance` learn a deep
    position only when every earlier one was accepted: in a text of short
    matches those stay at whatever a copying text taught them, and long
    drafts keep being tried.) The K_LONG running means are kept as arrays: a
    disagreement at position i updates every S_j from i on, and a step
    scores several proposals.
    """

    def __init__(self, p: float, decay: float = LOOKUP_DECAY):
        # Prior: each further token agrees with chance p, weighted as two observations.
        self.decay = decay
        self.weight = np.full(K_LONG, 2.0)
        self.total = p ** np.arange(1, K_LONG + 1) * self.weight

    def expected_tokens(self, k: int) -> float:
        return self.expected(k)[k]

    def expected(self, k_cap: int) -> list[float]:
        """E[tokens](k) for k = 0..k_cap (k_cap at most K_LONG)."""
        s = self.total[:k_cap] / self.weight[:k_cap]
        return [1.0, *(1.0 + np.cumsum(s)).tolist()]

    def observe(self, start: int, agreed: int, ended: bool) -> None:
        """Positions start..agreed-1 (0-based) of a proposal were decided and
        agree with the text; if `ended`, position `agreed` disagrees, which
        ends the proposal there (it agrees on no more than `agreed` tokens)."""
        a, b = min(start, K_LONG), min(agreed, K_LONG)
        self.total[a:b] = self.total[a:b] * self.decay + 1.0
        self.weight[a:b] = self.weight[a:b] * self.decay + 1.0
        if ended:
            self.total[b:] *= self.decay
            self.weight[b:] = self.weight[b:] * self.decay + 1.0


@dataclass
class Choice:
    method: str
    k: int
    rate: float  # expected tokens per second


class LookupScores:
    """Lookup proposals scored against the text that followed, used or not.

    A lookup draft costs nothing to make, so the planner makes one every step
    and keeps it; once the next tokens are known, the length of its agreement
    with them is what verification would have accepted. With greedy decoding
    that is exact. When sampling, a point-mass draft token is accepted with the
    target's probability of it, and the emitted token equals it with that same
    probability, so the agreement has the acceptance's distribution. Every
    match therefore teaches the planner, also while it decodes plainly: a text
    that stops copying (or starts) shows within a step or two, and lookup
    never needs a probe.

    `run` is the longest agreement among the proposals the latest resolve
    decided (0 in a new reply): how long the text has just been copying.
    """

    def __init__(self) -> None:
        # (position of the proposal's first token, proposal, acceptance key, positions scored)
        self._pending: list[tuple[int, list[int], str, int]] = []
        self._context: Sequence[int] | None = None  # the growing token list the proposals were made on
        self.run = 0

    def propose(self, context: Sequence[int], tokens: list[int], key: str) -> None:
        if context is not self._context:
            # A new reply (or other history): proposals made on the old one mean nothing here.
            self._pending, self._context, self.run = [], context, 0
        self._pending.append((len(context), tokens, key, 0))

    def resolve(self, context: Sequence[int]) -> list[tuple[str, int, int, bool]]:
        """(acceptance key, start, agreed, ended) for every proposal the text
        has decided more of since the last call: its positions start..agreed-1
        agree, and if `ended` position `agreed` does not. A position counts
        once its token is known, so agreement is learned a step after it
        happens, not only when the whole proposal has come true."""
        if context is not self._context:
            self._pending, self._context, self.run = [], None, 0
            return []
        out, still = [], []
        for pos, tokens, key, scored in self._pending:
            known = min(len(tokens), len(context) - pos)
            i = scored
            while i < known and context[pos + i] == tokens[i]:
                i += 1
            ended = i < known  # the first disagreement ends the draft
            if i > scored or ended:
                out.append((key, scored, i, ended))
            if not ended and i < len(tokens):
                still.append((pos, tokens, key, i))
        self._pending = still
        if out:
            self.run = max(agreed for _, _, agreed, _ in out)
        return out


def best_k(name: str, acc: Acceptance | Survival, costs: CostModel, k_cap: int, behind: int = 1) -> Choice:
    best = Choice("none", 0, 1.0 / costs.verify(1))
    expected = acc.expected(k_cap)
    for k in draft_lengths(costs, k_cap):
        rate = expected[k] / (costs.draft(name, k, behind) + costs.verify(k + 1))
        if rate > best.rate:
            best = Choice(name, k, rate)
    return best


@dataclass
class PlannerSettings:
    """What the user chose; a front end changes these between (or during) replies."""

    method: str = "auto"
    draft_max: int = 4  # k for a fixed method with fixed length
    auto_draft: bool = False  # a fixed method, but the planner picks k (0 included)
    auto_limit: int = K_LONG  # the most the planner may draft when it picks k (model drafters: K_MAX)


# Prior acceptance per position for a model drafter the planner has not seen yet.
MODEL_PRIORS = {"draft": [0.7, 0.7, 0.65, 0.6], "mtp": [0.6, 0.5, 0.4]}
DEFAULT_PRIOR = [0.6, 0.5, 0.4]


class Planner:
    """The engine's step planner: fixed settings, or chosen from measurements.

    It holds the settings, the drafters by name and the lookup drafter it
    scores, and learns only from the step events it is given: which drafter
    made the draft, whether a model ran and what that cost, what was accepted.

    Every step is recorded, whatever chose it, so the estimates are warm when
    the user switches to `auto` or to automatic draft length. Every step also
    makes a lookup proposal and scores it against the text that follows, so
    lookup's estimates never go stale; model drafters are learned from the
    steps that ran them, and probed now and then when sidelined.
    """

    def __init__(
        self,
        settings: PlannerSettings,
        drafters: Mapping[str, Drafter],
        lookup: Drafter | None = None,
        costs: CostModel | None = None,
        lookup_decay: float = LOOKUP_DECAY,
    ):
        self.settings = settings
        self.drafters = drafters
        self.lookup = lookup
        self.costs = costs or CostModel()
        # Priors: lookup is right more often at short range; a same-family draft model
        # agrees with its target most of the time on the first tokens.
        self.acceptance: dict[str, Acceptance | Survival] = {
            name: Acceptance(MODEL_PRIORS.get(name, DEFAULT_PRIOR)) for name in self._model_drafters()
        }
        # Lookup acceptance depends mostly on how long the matched n-gram was.
        for n in LOOKUP_BUCKETS:
            self.acceptance[f"lookup{n}"] = Survival(LOOKUP_PRIORS[n], lookup_decay)
        self.idle_steps: dict[str, int] = {}
        self.probe_after: dict[str, int] = {}
        self._probing = False
        self.lookup_scores = LookupScores()
        self._lookup_available = 0  # length of this step's lookup proposal
        self._lookup_match_n = 0  # and the n-gram length behind it

    def estimates(self) -> dict:
        """A copy of what the planner has learned of its drafters (acceptance,
        probing), not of the machine (its costs): `restore` puts it back, so a
        benchmark can run one text several times without any run learning
        from another run of the same text."""
        return copy.deepcopy({"acceptance": self.acceptance, "idle": self.idle_steps, "probe": self.probe_after})

    def restore(self, estimates: dict) -> None:
        saved = copy.deepcopy(estimates)
        self.acceptance, self.idle_steps, self.probe_after = saved["acceptance"], saved["idle"], saved["probe"]

    def _single_drafters(self) -> list[str]:
        """Drafters that draft by themselves (not a combination of others)."""
        return [name for name, d in self.drafters.items() if not getattr(d, "members", None)]

    def _model_drafters(self) -> list[str]:
        return [name for name in self._single_drafters() if name != "lookup"]

    def plan(self, context: Sequence[int]) -> StepPlan:
        settings = self.settings
        method = settings.method
        self._score_lookup(context)
        if method == "none":
            return StepPlan("none", None, 0)
        if method != "auto" and not settings.auto_draft:
            return StepPlan(method, self.drafters[method], settings.draft_max)
        candidates = self._candidates(method)
        limit = max(0, min(settings.auto_limit, K_LONG))
        choice = Choice("none", 0, 1.0 / self.costs.verify(1))
        for name in candidates:
            c = self._choose(name, context, limit)
            if c.rate > choice.rate:
                choice = c
        probe = self._probe(candidates, choice, context, limit) if limit else None
        if probe is not None:
            choice = probe
        if choice.k == 0:
            return StepPlan("none", None, 0)
        stop_below = self._draft_stop(choice.method) if choice.method != "lookup" else 0.0
        return StepPlan(choice.method, self.drafters[choice.method], choice.k, stop_below)

    def _candidates(self, method: str) -> list[str]:
        """The single drafters whose estimates this step weighs.

        `auto` weighs every drafter there is; a fixed method with automatic
        length weighs only its own, and a combined one (\"draft+lookup\") its
        members in its order, skipping lookup when it has no proposal.
        """
        if method == "auto":
            return self._single_drafters()
        members = getattr(self.drafters[method], "members", None)
        if members:
            usable = [m for m in members if m != "lookup" or self._lookup_available]
            return usable[:1]
        return [method]

    def _choose(self, name: str, context: Sequence[int], limit: int) -> Choice:
        if name == "lookup":
            # The proposal is free to compute: only its length is in question.
            if not self._lookup_available:
                return Choice("none", 0, 0.0)
            # Past K_MAX a draft may be at most twice as long as the text has
            # just been copying (slow start): a long verify that fails costs
            # dozens of steps (64 rows ~ 24 on a 2-core Zen 4), and acceptance
            # learned on one text says little about the next one's long tail.
            # The copy so far is the longest agreement of the latest proposals,
            # or a match longer than any short draft: its last match_n tokens
            # are a copy already, drafted or not (llama.cpp's ngram-mod drafts
            # 48-64 after a 24-token match). Short matches are too common in
            # text that does not copy to count.
            match = self._lookup_match_n if self._lookup_match_n > K_MAX else 0
            copied = max(self.lookup_scores.run, match)
            cap = min(self._lookup_available, limit, max(K_MAX, 2 * copied + 1))
            return best_k(name, self._lookup_acceptance(self._lookup_match_n), self.costs, cap)
        behind = self.drafters[name].behind(context)
        return best_k(name, self.acceptance[name], self.costs, min(limit, K_MAX), behind)

    def _lookup_key(self, match_n: int) -> str:
        return f"lookup{lookup_bucket(match_n)}"

    def _lookup_acceptance(self, match_n: int) -> Survival:
        return self.acceptance[self._lookup_key(match_n)]

    def _score_lookup(self, context: Sequence[int]) -> None:
        """Learn from the proposals the text has now decided; make this step's."""
        for key, start, agreed, ended in self.lookup_scores.resolve(context):
            self.acceptance[key].observe(start, agreed, ended)
        if self.lookup is None:
            self._lookup_available = 0
            return
        draft = self.lookup.propose(context, lookup_cap(self.costs), None, None)
        self._lookup_available, self._lookup_match_n = len(draft.tokens), draft.match_n
        if draft.tokens:
            self.lookup_scores.propose(context, list(draft.tokens), self._lookup_key(draft.match_n))

    def _probe(self, candidates: list[str], choice: Choice, context: Sequence[int], limit: int = K_MAX) -> Choice | None:
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
                return Choice(name, min(2, limit), 0.0)  # model drafters only: lookup never probes
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
        behind = self.drafters[name].behind(context)
        return self.costs.draft(name, 1, max(behind, 1)) <= PROBE_BUDGET_STEPS * self.costs.verify(1)

    def _draft_stop(self, name: str) -> float:
        """The drafter's stop threshold for this step.

        Drafting one more token pays if the chance that it and all before it are
        accepted, times the plain cost of a token, exceeds what it costs to draft and
        verify it. The drafter's own running probability stands in for that chance.
        """
        c = self.costs
        marginal = c.draft(name, 1) + max(c.verify(3) - c.verify(2), 0.0)
        return min(0.95, marginal / c.verify(1))

    def record(self, event: StepEvent) -> None:
        self.costs.record_verify(event)
        source = event.source
        if not event.ran or source not in self.acceptance:
            return  # lookup drafts are learned from LookupScores, used or not
        if event.work.catch_up[0]:
            self.costs.record_draft_model(event.work.catch_up, event.work.singles)
        else:
            self.costs.record_draft_tokens(source, event.work.singles)
        # Asked, ran, then too unsure to propose anything: as costly as a
        # rejected token, and counted as one so the planner stops asking.
        self.acceptance[source].record(event.drafted or 1, event.accepted)
