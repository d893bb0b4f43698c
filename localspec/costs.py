"""What a step costs: seconds to verify n rows, and to run the draft model.

The planner divides expected tokens by these; all of them are measured on
this machine, seeded by the calibration at load (localspec/calibrate.py) and
learned from every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from localspec.events import StepEvent

DECAY = 0.85  # weight of the past in each running estimate: adapts within a reply
CURVE_DECAY = 0.98  # the verify curve's shape changes slowly (see CostModel)
# A Floor falls half way to a faster sample and rises a twentieth of the way to a
# slower one: it settles near the quick end of what steps take, and a lasting
# change (a longer context, another program on the cores) moves it within a few
# dozen steps.
FLOOR_DOWN = 0.5
FLOOR_UP = 0.05


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


class Floor:
    """A running low quantile of a duration: falls fast, rises slowly."""

    def __init__(self) -> None:
        self.value: float | None = None

    def add(self, x: float) -> None:
        if self.value is None:
            self.value = x
        else:
            self.value += (FLOOR_DOWN if x < self.value else FLOOR_UP) * (x - self.value)


class PlainReference:
    """What plain decoding (`--method none`) of this target costs per token
    here: the yardstick a front end's "plain" and "speedup" compare with.

    Three parts, each a Floor over this session's steps:
    - `decode`: a one-row verify at the current context, from every step, an
      n-row verify scaled by the curve's one-row share of it. The floor
      follows the context as it lengthens, and a step slowed by other work
      on the cores (a UI drawing while llama.cpp's threads want both cores)
      lands above it, so the UI's own load does not lower the yardstick. It
      starts from the first step, not from the calibration: the calibrated
      figure is the fastest a session has seen (calibrate.remember keeps the
      minimum), and a yardstick too fast shows a speedup too small for as
      long as the floor takes to climb.
    - `overhead`: the rest of a step's wall time, outside drafting and
      verifying (the loop's bookkeeping, detokenizing, recording, the consumer),
      which the calibration, timing bare decodes, leaves out.
    - `plan`: the planning time of steps that drafted nothing (0 until one has run).

    Per reply it adds up what plain decoding would have spent on each step's
    tokens at that step's context, so `tokens_per_s` compares like with like
    with the reply's own rate: same tokens, same context lengths.
    """

    def __init__(self) -> None:
        self.decode = Floor()
        self.overhead = Floor()
        self.plan = Floor()
        self.tokens = 0  # of the latest reply
        self.plain_s = 0.0  # what plain decoding would have spent on them
        self._gen_s = 0.0

    def record(self, event: StepEvent, one_row_share: float) -> None:
        c = event.counters
        if c.steps <= 1:  # a new reply
            self.tokens, self.plain_s, self._gen_s = 0, 0.0, 0.0
        step_s, self._gen_s = c.gen_s - self._gen_s, c.gen_s
        self.decode.add(event.verify_s * one_row_share)
        self.overhead.add(max(step_s - event.draft_s - event.verify_s, 0.0))
        if not event.drafted:
            self.plan.add(event.draft_s)
        self.tokens += len(event.tokens)
        self.plain_s += len(event.tokens) * self.step_s

    @property
    def step_s(self) -> float:
        return sum(f.value or 0.0 for f in (self.decode, self.overhead, self.plan))

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.plain_s if self.plain_s > 0 else None


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
    plain: PlainReference = field(default_factory=PlainReference)

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
        # Before the curve learns from this step: its shape converts it to one row.
        self.plain.record(event, self.curve(1) / self.curve(n))
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
            # The measured sizes only: read back, every key is a size the planner may choose.
            "verify_s": {n: self.verify(n) for n in sorted(self.verify_s)},
            "level": self.level.value,
            "draft_token_s": {name: m.value for name, m in self.draft_token_s.items()},
            "draft_catch_up": list(self.catch_up.a_b()) if self.catch_up else None,
        }

    @classmethod
    def from_snapshot(cls, snap: dict) -> "CostModel":
        """The estimates a snapshot recorded (read back from JSON too), priced
        the same way, so a report asks the planner's own questions of them."""
        c = cls()
        c.seed({int(n): s for n, s in snap["verify_s"].items()}, snap.get("draft_token_s", {}))
        if snap.get("draft_catch_up"):
            c.catch_up = LinearFit(*snap["draft_catch_up"])
        return c

    def record_draft_model(self, catch_up: tuple[int, float], singles: tuple[int, float]) -> None:
        if self.catch_up is None:
            self.catch_up = LinearFit(catch_up[1], 0.0)
        self.catch_up.add(*catch_up)
        self.record_draft_tokens("draft", singles)

    def record_draft_tokens(self, name: str, decodes: tuple[int, float]) -> None:
        n, s = decodes
        if n:
            self.draft_token_s.setdefault(name, RunningMean(s / n, 0.0)).add(s / n, weight=n)
