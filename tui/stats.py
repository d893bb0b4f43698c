"""The live speculation panel: how fast this reply is going, and why.

Every number comes from the engine's step events (the reply's running
`Counters`) and its settings; the panel keeps no statistics of its own
beyond the per-step rates its sparkline draws.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Sparkline, Static

from localspec.events import Counters, StepEvent

BAR_WIDTH = 12
MAX_POSITIONS = 8
SPARK_POINTS = 120


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

    counters: reactive[Counters | None] = reactive(None, always_update=True)
    """Running totals of the reply being generated, or of the last one."""
    method: reactive[str] = reactive("")
    """The engine's method setting (what the next step will use, "auto" included)."""
    step_method: reactive[str] = reactive("")
    """The drafter the last step actually used; under "auto" it varies per step."""
    draft_max: reactive[int] = reactive(0)
    """The engine's draft length setting."""
    auto_draft: reactive[bool] = reactive(False)
    """Whether the engine chooses the draft length each step."""
    step_k: reactive[int | None] = reactive(None)
    """The draft length the last step asked for."""
    plain_rate: reactive[float | None] = reactive(None)
    """Measured plain-decoding tokens/s of this target here; None until known."""
    rates: reactive[tuple[float, ...]] = reactive(())
    """Tokens/s of each step of this reply, oldest first (the sparkline's data)."""
    show_sources: reactive[bool] = reactive(True)
    """Whether replies colour tokens by origin (the legend says so)."""

    def compose(self) -> ComposeResult:
        yield Static(id="setting")
        yield Static("this reply", classes="heading")
        yield Static(id="speed")
        yield Sparkline([], id="spark")
        yield Static(id="acceptance")
        yield Static("acceptance by draft position", classes="heading")
        yield Static(id="positions")
        yield Static("time: drafting vs verifying", classes="heading")
        yield Static(id="split")
        yield Static(id="legend")

    def on_mount(self) -> None:
        self.query_one(Sparkline).summary_function = lambda values: sum(values) / len(values)
        self._draw()

    def start_reply(self) -> None:
        self.rates = ()
        self.counters = None
        self.step_method = ""
        self.step_k = None

    def show_step(self, event: StepEvent) -> None:
        if event.wall_s > 0:
            self.rates = (*self.rates, len(event.tokens) / event.wall_s)[-SPARK_POINTS:]
        self.step_method = event.method
        self.step_k = event.k
        self.counters = event.counters

    def show_settings(self, method: str, draft_max: int, auto_draft: bool, plain_rate: float | None) -> None:
        self.method = method
        self.draft_max = draft_max
        self.auto_draft = auto_draft
        self.plain_rate = plain_rate

    def watch_rates(self, rates: tuple[float, ...]) -> None:
        if self.is_mounted:
            self.query_one(Sparkline).data = list(rates)

    def _watch_any(self) -> None:
        if self.is_mounted:
            self._draw()

    watch_counters = watch_method = watch_step_method = watch_draft_max = _watch_any
    watch_auto_draft = watch_step_k = watch_plain_rate = watch_show_sources = _watch_any

    def _draw(self) -> None:
        c = self.counters
        self.query_one("#setting", Static).update(self._setting_text())
        self.query_one("#speed", Static).update(self._speed_text(c))
        self.query_one("#acceptance", Static).update(self._acceptance_text(c))
        self.query_one("#positions", Static).update(self._positions_text(c))
        self.query_one("#split", Static).update(self._split_text(c))
        self.query_one("#legend", Static).update(self._legend())

    def _setting_text(self) -> Content:
        automatic = self.method == "auto" or self.auto_draft
        if not self.method:
            k = "–"
        elif automatic:
            k = "auto"
        else:
            k = str(self.draft_max)
        used = ""
        if self.step_method and (self.step_method != self.method or automatic):
            used = f" → {self.step_method}" + (f" k={self.step_k}" if self.step_k else "")
        return Content.from_markup(
            "[b]method[/b] $method$used\n[b]draft length[/b] $k",
            method=self.method or "–",
            used=used,
            k=k,
        )

    def _speed_text(self, c: Counters | None) -> Content:
        rate = f"{c.tokens_per_s:.1f}" if c and c.gen_s > 0 else "–"
        plain = f"{self.plain_rate:.1f} tok/s" if self.plain_rate else "–"
        speedup = f"{c.tokens_per_s / self.plain_rate:.2f}×" if c and c.gen_s > 0 and self.plain_rate else "–"
        tokens = str(c.n_generated) if c else "–"
        return Content.from_markup(
            "tok/s    [b]$rate[/b]\nplain    $plain\nspeedup  [b]$speedup[/b]\ntokens   $tokens",
            rate=rate,
            plain=plain,
            speedup=speedup,
            tokens=tokens,
        )

    def _acceptance_text(self, c: Counters | None) -> Content:
        if not c or not c.drafted:
            return Content("accepted –\nper step –")
        return Content.from_markup(
            "accepted [b]$rate[/b] ($accepted of $drafted)\nper step [b]$mean[/b] draft tokens kept",
            rate=f"{c.acceptance_rate:.0%}",
            accepted=str(c.accepted),
            drafted=str(c.drafted),
            mean=f"{c.mean_accepted_per_step:.2f}",
        )

    def _positions_text(self, c: Counters | None) -> Content:
        rates = c.per_position_acceptance[:MAX_POSITIONS] if c else []
        if not rates:
            return Content("no drafts yet")
        lines = [
            Content.assemble(f"{i + 1:>2} ", (bar(r), "$success"), f" {r:>4.0%}")
            for i, r in enumerate(rates)
        ]
        return Content("\n").join(lines)

    def _split_text(self, c: Counters | None) -> Content:
        total = c.draft_s + c.verify_s if c else 0.0
        if not total:
            return Content("draft –  verify –")
        share = c.draft_s / total
        return Content.assemble(
            f"draft {share:>4.0%} ", (bar(share, 10), "$warning"), f" verify {1 - share:.0%}"
        )

    def _legend(self) -> Content:
        if not self.show_sources:
            return Content.from_markup("[dim]token colours off[/dim]")
        return Content.from_markup("[$text-success on $success 12%]accepted from a draft[/]\nproduced by the target")
