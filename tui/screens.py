"""Modal screens: help, past chats, pair picker, chat settings, export path."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, LoadingIndicator, OptionList, Select, Static, TextArea
from textual.widgets.option_list import Option

from tui.pairs import LoadRequest, PairChoice
from tui.store import ChatSettings, Conversation, local_time
from tui.window import ROLLING, STOP

OVERFLOW = [
    ("Rolling window: the oldest turns leave the model's memory", ROLLING),
    ("Stop: say so; a new chat or a larger --n-ctx goes on", STOP),
]

MODAL_CSS = """
{name} {{
    align: center middle;
}}
{name} > Vertical {{
    width: 90%;
    max-width: 100;
    height: auto;
    max-height: 90%;
    padding: 1 2;
    border: thick $primary;
    background: $surface;
}}
{name} .title {{
    text-style: bold;
    color: $text-primary;
    margin: 0 0 1 0;
}}
{name} .hint {{
    color: $text-muted;
    margin: 1 0 0 0;
}}
"""


class HelpScreen(ModalScreen[None]):
    """Every key of the app, as the keymap currently binds it."""

    DEFAULT_CSS = MODAL_CSS.format(name="HelpScreen") + """
    HelpScreen VerticalScroll { height: auto; max-height: 1fr; }
    """
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def __init__(self, rows: list[tuple[str, str, str]]):
        super().__init__()
        self.rows = rows  # (keys, description, binding id)

    def compose(self) -> ComposeResult:
        width = max((len(k) for k, _, _ in self.rows), default=0)
        lines = [
            Content.assemble((keys.ljust(width), "bold $text-accent"), f"  {desc}", (f"  [{bid}]" if bid else "", "$text-muted"))
            for keys, desc, bid in self.rows
        ]
        with Vertical():
            yield Label("Keys", classes="title")
            with VerticalScroll():
                yield Static(Content("\n").join(lines), id="keys")
            yield Static(
                "Remap a key by its [id] in the [keymap] table of keymap.toml in the localspec "
                "config directory (docs/tui.md). Esc closes.",
                classes="hint",
                markup=False,
            )


class HistoryScreen(ModalScreen[int | None]):
    """Past chats, most recent first; Enter opens one, Delete removes it."""

    DEFAULT_CSS = MODAL_CSS.format(name="HistoryScreen")
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("delete", "delete", "Delete chat", id="history_delete"),
    ]

    def __init__(
        self, conversations: list[Conversation], delete: Callable[[int], None], elsewhere: frozenset[int] = frozenset()
    ):
        super().__init__()
        self.conversations = conversations
        self.delete = delete
        self.elsewhere = elsewhere  # open in another running chat

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Chats", classes="title")
            labels = ((c, self._label(c, c.id in self.elsewhere)) for c in self.conversations)
            yield OptionList(*(Option(label, id=str(c.id)) for c, label in labels))
            yield Label("Enter: open · Delete: delete · Esc: close", classes="hint")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = 0 if self.conversations else None
        options.focus()

    @staticmethod
    def _label(c: Conversation, elsewhere: bool = False) -> Content:
        details = f"\n{local_time(c.updated_at)} · {c.n_messages} messages · {c.model}"
        if elsewhere:
            details += " · open in another chat"
        return Content.assemble(c.title, (details, "$text-muted"))

    @on(OptionList.OptionSelected)
    def _open(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option_id))

    def action_delete(self) -> None:
        options = self.query_one(OptionList)
        option = options.highlighted_option
        if option is not None and int(option.id) in self.elsewhere:
            # Its chat would go on writing to a conversation that is gone.
            self.notify("This chat is open in another localspec chat; quit it there first.", severity="warning")
        elif option is not None:
            self.delete(int(option.id))
            options.remove_option(option.id)


class PairPickerScreen(ModalScreen[LoadRequest | None]):
    """Pairs from models.toml and local vocabulary-compatible drafts."""

    DEFAULT_CSS = MODAL_CSS.format(name="PairPickerScreen") + """
    PairPickerScreen LoadingIndicator { height: 3; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]

    def __init__(self, load_choices: Callable[[], list[PairChoice]], current: str):
        super().__init__()
        self.load_choices = load_choices
        self.current = current
        self.choices: list[PairChoice] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Load a pair (now: {self.current})", classes="title")
            yield LoadingIndicator()
            yield OptionList()
            yield Label("Only drafts whose vocabulary matches the target's are listed.", classes="hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).display = False
        self._read_choices()

    @work(thread=True, exit_on_error=False)
    def _read_choices(self) -> None:
        # GGUF headers with whole vocabularies: too slow for the UI thread.
        try:
            choices = self.load_choices()
        except Exception as e:  # a broken models.toml must not take the app down
            self.app.call_from_thread(self._failed, str(e))
            return
        self.app.call_from_thread(self._show, choices)

    def _show(self, choices: list[PairChoice]) -> None:
        self.choices = choices
        self.query_one(LoadingIndicator).display = False
        options = self.query_one(OptionList)
        options.add_options(
            Option(Content.assemble((c.label, "bold"), (f"\n{c.detail}", "$text-muted")), id=str(i))
            for i, c in enumerate(choices)
        )
        options.display = True
        options.highlighted = 0 if choices else None
        options.focus()

    def _failed(self, message: str) -> None:
        self.query_one(LoadingIndicator).display = False
        self.app.notify(message, title="Cannot list pairs", severity="error")
        self.dismiss(None)

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[int(event.option_id)].request)


class SettingsScreen(ModalScreen[ChatSettings | None]):
    """System prompt, sampling and context overflow policy of the current chat."""

    DEFAULT_CSS = MODAL_CSS.format(name="SettingsScreen") + """
    SettingsScreen TextArea { height: 6; }
    SettingsScreen Horizontal { height: auto; }
    SettingsScreen Horizontal > Vertical { width: 1fr; height: auto; }
    SettingsScreen Input { width: 1fr; }
    SettingsScreen Button { margin: 1 1 0 0; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"), Binding("ctrl+s", "save", "Save", id="settings_save")]

    def __init__(self, settings: ChatSettings):
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        s = self.settings
        with Vertical():
            yield Label("Chat settings", classes="title")
            yield Label("System prompt")
            yield TextArea(s.system, id="system", soft_wrap=True)
            with Horizontal():
                for id, label, value in (
                    ("temperature", "Temperature (0 = greedy)", f"{s.temperature:g}"),
                    ("top_p", "Top-p", f"{s.top_p:g}"),
                    ("max_tokens", "Max tokens per reply", str(s.max_tokens)),
                ):
                    with Vertical():
                        yield Label(label)
                        yield Input(value, id=id, type="integer" if id == "max_tokens" else "number")
            yield Label("When the conversation outgrows the context")
            yield Select(OVERFLOW, value=s.overflow, allow_blank=False, id="overflow")
            with Horizontal():
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    @on(Button.Pressed, "#save")
    @on(Input.Submitted)
    def action_save(self) -> None:
        try:
            temperature = float(self.query_one("#temperature", Input).value)
            top_p = float(self.query_one("#top_p", Input).value)
            max_tokens = int(self.query_one("#max_tokens", Input).value)
        except ValueError:
            self.notify("temperature and top-p must be numbers, max tokens a whole number", severity="error")
            return
        if not (temperature >= 0 and 0 < top_p <= 1 and max_tokens >= 1):
            self.notify("need temperature ≥ 0, 0 < top-p ≤ 1 and max tokens ≥ 1", severity="error")
            return
        system = self.query_one("#system", TextArea).text.strip()
        overflow = str(self.query_one("#overflow", Select).value)
        self.dismiss(ChatSettings(system, temperature, top_p, max_tokens, overflow))

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class ExportScreen(ModalScreen[Path | None]):
    DEFAULT_CSS = MODAL_CSS.format(name="ExportScreen")
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, default: Path):
        super().__init__()
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Export this chat to Markdown", classes="title")
            yield Input(str(self.default), id="path")
            yield Label("Enter: write the file · Esc: cancel", classes="hint")

    @on(Input.Submitted)
    def _write(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(Path(event.value.strip()).expanduser())
