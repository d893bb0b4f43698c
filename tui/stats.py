"""The live speculation panel: how fast this reply is going, and why.

Every number comes from the engine's step events (the reply's running
`Counters`) and its settings; the panel keeps no statistics of its own
beyond the per-step rates its sparkline draws.

It draws when told to, never per step: the app hands it batches of steps
(`add_steps`) and asks for a draw a few times a second (`draw_steps`), and
a draw updates only the lines whose text changed. Settings (a key press)
are drawn at once.
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Sparkline, Static

from localspec.controller import K_MAX
from localspec.events import Counters, StepEvent

BAR_WIDTH = 12
MAX_POSITIONS = 8
POSITION_GROUPS = ((9, 16), (17, 32), (33, 64))
SPARK_POINTS = 120
SPARK_S = 1.0  # the sparkline costs as much to draw as the rest of the panel: once a second


def position_rows(c: Counters) -> list[tuple[str, float]]:
    """(label, acceptance) per draft position: one row each up to
    MAX_POSITIONS, then one per group of POSITION_GROUPS (long lookup drafts
    reach position 63): of the drafted tokens in the group, the share kept."""
    rows = [(str(i + 1), r) for i, r in enumerate(c.per_position_acceptance[:MAX_POSITIONS])]
    for lo, hi in POSITION_GROUPS:
        drafted = sum(c.drafted_at[lo - 1 : hi])
        if drafted:
            rows.append((f"{lo}-{hi}", sum(c.accepted_at[lo - 1 : hi]) / drafted))
    return rows


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, rest = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[rest] if rest else ""
    return ("█" * full + partial).ljust(width, "·")


class StatsPanel(VerticalScroll, can_focus=False):
    DEFAULT_CSS = """
    StatsPanel {
        width: 36;
        height: 1fr;
        padding: 0 1;
        border-left: vkey $foreground 20%;
    }
    StatsPanel > Static {
        height: auto;
    }
    StatsPanel > .heading {
        color: $text-primary;
        text-style: bold;
        margin: 1 0 0 0;
    }
    StatsPanel > Sparkline {
        height: 3;
        margin: 0 0 0 0;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.counters: Counters | None = None  # running totals shown: this reply's, or the last one's
        self.rates: deque[float] = deque(maxlen=SPARK_POINTS)  # tokens/s of each step, oldest first
        self.method = ""  # the engine's setting ("auto" included)
        self.step_method = ""  # the drafter the last shown step used; under auto it varies per step
        self.step_k: int | None = None  # the draft length that step asked for
        self.draft_max = 0
        self.auto_draft = False  # whether the engine picks the length each step
        self.auto_limit = K_MAX  # the most it may pick
        self.plain_rate: float | None = None  # plain decoding's tokens/s here; None until measured
        self.show_sources = True  # whether replies colour tokens (the legend says so)
        self.draws = 0  # draws that changed something (the tests count them)
        self._latest: StepEvent | None = None  # the newest step not drawn yet
        self._rates_changed = False
        self._spark_at = float("-inf")
        self._shown: dict[str, tuple] = {}
        self.round_trips: dict[str, float] = {}  # rpc-server: seconds of one request-reply, after the last reply

    def compose(self) -> ComposeResult:
        # Held, not queried: a reply that ends while the app quits still draws its totals.
        self._lines = {name: Static(id=name) for name in ("setting", "speed", "acceptance", "positions", "split", "legend")}
        self._spark = Sparkline([], id="spark")
        self._spark.summary_function = lambda values: sum(values) / len(values)
        yield self._lines["setting"]
        yield Static("this reply", classes="heading")
        yield self._lines["speed"]
        yield self._spark
        yield self._lines["acceptance"]
        yield Static("acceptance by draft position", classes="heading")
        yield self._lines["positions"]
        yield Static("time: drafting vs verifying", classes="heading")
        yield self._lines["split"]
        yield self._lines["legend"]

    def on_mount(self) -> None:
        self._draw()

    def start_reply(self) -> None:
        self.rates.clear()
        self._rates_changed = True
        self.counters = None
        self._latest = None
        self.step_method = ""
        self.step_k = None
        self._draw()

    def add_steps(self, events: Sequence[StepEvent]) -> None:
        """Take steps in; nothing is drawn until `draw_steps`."""
        for event in events:
            if event.wall_s > 0:
                self.rates.append(len(event.tokens) / event.wall_s)
                self._rates_changed = True
        if events:
            self._latest = events[-1]

    @property
    def pending(self) -> bool:
        return self._latest is not None

    @property
    def latest_counters(self) -> Counters | None:
        """The newest totals, drawn or not."""
        return self._latest.counters if self._latest is not None else self.counters

    def draw_steps(self, plain_rate: float | None, now: float) -> None:
        """Draw the newest step taken in (its totals, method and k); the
        sparkline at most every SPARK_S."""
        if self._latest is not None:
            event, self._latest = self._latest, None
            self.counters = event.counters
            self.step_method = event.method
            self.step_k = event.k
        self.plain_rate = plain_rate
        spark = self._rates_changed and now - self._spark_at >= SPARK_S
        if spark:
            self._spark_at = now
        self._draw(spark)

    def show_counters(self, counters: Counters, plain_rate: float | None) -> None:
        """A reply's final totals."""
        self._latest = None
        self.counters = counters
        self.plain_rate = plain_rate
        self._draw()

    def show_settings(
        self, method: str, draft_max: int, auto_draft: bool, auto_limit: int, plain_rate: float | None
    ) -> None:
        self.method, self.draft_max, self.auto_draft, self.auto_limit = method, draft_max, auto_draft, auto_limit
        self.plain_rate = plain_rate
        self._draw()

    def show_round_trips(self, seconds: dict[str, float]) -> None:
        self.round_trips = dict(seconds)
        self._draw()

    def set_show_sources(self, show: bool) -> None:
        self.show_sources = show
        self._draw()

    def _draw(self, spark: bool = True) -> None:
        if not self.is_mounted:
            return
        c = self.counters
        changed = False
        for line, content in (
            ("setting", self._setting_text()),
            ("speed", self._speed_text(c)),
            ("acceptance", self._acceptance_text(c)),
            ("positions", self._positions_text(c)),
            ("split", self._split_text(c)),
            ("legend", self._legend()),
        ):
            key = (content.plain, tuple(content.spans))
            old = self._shown.get(line)
            if old != key:
                self._shown[line] = key
                self._lines[line].update(content, layout=self._height_may_change(old, content))
                changed = True
        if self._rates_changed and spark:
            self._rates_changed = False
            self._spark.data = list(self.rates)
            changed = True
        self.draws += changed

    def _height_may_change(self, old: tuple | None, new: Content) -> bool:
        # A layout costs a reflow of the screen; the panel's lines mostly keep their height.
        if old is None or old[0].count("\n") != new.plain.count("\n"):
            return True
        return max(map(len, new.plain.split("\n"))) >= self.scrollable_content_region.width

    # The lines are assembled, not parsed from markup: parsing was three quarters of a panel draw.
    def _setting_text(self) -> Content:
        automatic = self.method == "auto" or self.auto_draft
        if not self.method:
            k = "–"
        elif automatic:
            k = f"auto ≤ {self.auto_limit}"
        else:
            k = str(self.draft_max)
        used = ""
        if self.step_method and (self.step_method != self.method or automatic):
            used = f" → {self.step_method}" + (f" k={self.step_k}" if self.step_k else "")
        return Content.assemble(("method", "b"), f" {self.method or '–'}{used}\n", ("draft length", "b"), f" {k}")

    def _speed_text(self, c: Counters | None) -> Content:
        rate = f"{c.tokens_per_s:.1f}" if c and c.gen_s > 0 else "–"
        plain = f"{self.plain_rate:.1f} tok/s" if self.plain_rate else "–"
        speedup = f"{c.tokens_per_s / self.plain_rate:.2f}×" if c and c.gen_s > 0 and self.plain_rate else "–"
        tokens = str(c.n_generated) if c else "–"
        return Content.assemble(
            "tok/s    ", (rate, "b"), f"\nplain    {plain}\nspeedup  ", (speedup, "b"), f"\ntokens   {tokens}"
        )

    def _acceptance_text(self, c: Counters | None) -> Content:
        if not c or not c.drafted:
            return Content("accepted –\nper step –")
        return Content.assemble(
            "accepted ", (f"{c.acceptance_rate:.0%}", "b"), f" ({c.accepted} of {c.drafted})\n",
            "per step ", (f"{c.mean_accepted_per_step:.2f}", "b"), " draft tokens kept",
        )  # fmt: skip

    def _positions_text(self, c: Counters | None) -> Content:
        rows = position_rows(c) if c else []
        if not rows:
            return Content("no drafts yet")
        width = max(2, *(len(label) for label, _ in rows))
        lines = [Content.assemble(f"{label:>{width}} ", (bar(r), "$success"), f" {r:>4.0%}") for label, r in rows]
        return Content("\n").join(lines)

    def _split_text(self, c: Counters | None) -> Content:
        total = c.draft_s + c.verify_s if c else 0.0
        if not total:
            return Content("draft –  verify –" + self._network_text(None))
        share = c.draft_s / total
        return Content.assemble(
            f"draft {share:>4.0%} ", (bar(share, 10), "$warning"), f" verify {1 - share:.0%}", self._network_text(c)
        )

    def _network_text(self, c: Counters | None) -> str:
        """The target over RPC: the measured round trip, and the least share
        of verify time it takes (each verify step waits on at least one)."""
        if not self.round_trips:
            return ""
        lo, hi = min(self.round_trips.values()), max(self.round_trips.values())
        shown = f"{1000 * lo:.2f}" if hi - lo < 5e-6 else f"{1000 * lo:.2f}-{1000 * hi:.2f}"
        line = f"\nrpc round trip {shown} ms"
        rtt = lo  # (which server a step waits on last is not known: the bound takes the nearest)
        if c and c.verify_s > 0 and c.steps:
            line += f"\nnetwork ≥ {min(1.0, c.steps * rtt / c.verify_s):.0%} of verify"
        return line

    def _legend(self) -> Content:
        if not self.show_sources:
            return Content.assemble(("token colours off", "dim"))
        return Content.assemble(("accepted from a draft", "$text-success on $success 12%"), "\nproduced by the target")
