"""Conversations on disk: one SQLite file in the user data directory.

`$LOCALSPEC_DATA_DIR` overrides the directory (the tests use a temporary
one). All access happens on the UI thread; the writes are a few rows per
reply.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tui.migrations import migrate

DB_NAME = "chats.db"
Runs = tuple[tuple[int, str], ...]  # (n_chars, "d" accepted draft | "t" target) in text order


def data_dir() -> Path:
    env = os.environ.get("LOCALSPEC_DATA_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("localspec"))


@dataclass(frozen=True)
class ChatSettings:
    system: str = ""
    temperature: float = 0.0  # greedy: replies identical to plain decoding, token for token
    top_p: float = 1.0
    max_tokens: int = 1024


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    model: str
    settings: ChatSettings
    created_at: str
    updated_at: str
    n_messages: int = 0


@dataclass(frozen=True)
class StoredMessage:
    id: int
    role: str  # "user" | "assistant"
    content: str
    stop_reason: str | None = None
    sources: Runs | None = None
    stats: dict | None = None


def _now() -> str:
    # Microseconds: "most recently active first" must order two writes in one second.
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class ChatStore:
    def __init__(self, path: Path | None = None):
        self.path = path or data_dir() / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: every write below is one statement or an explicit transaction.
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA foreign_keys = ON")
        migrate(self.db)

    def close(self) -> None:
        self.db.close()

    def create(self, title: str, model: str, settings: ChatSettings) -> Conversation:
        now = _now()
        cur = self.db.execute(
            "INSERT INTO conversations (title, model, system, temperature, top_p, max_tokens, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (title, model, settings.system, settings.temperature, settings.top_p, settings.max_tokens, now, now),
        )
        return Conversation(cur.lastrowid, title, model, settings, now, now)

    def update_settings(self, conversation_id: int, settings: ChatSettings) -> None:
        self.db.execute(
            "UPDATE conversations SET system = ?, temperature = ?, top_p = ?, max_tokens = ?, updated_at = ?"
            " WHERE id = ?",
            (settings.system, settings.temperature, settings.top_p, settings.max_tokens, _now(), conversation_id),
        )

    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str,
        *,
        stop_reason: str | None = None,
        sources: Runs | None = None,
        stats: dict | None = None,
    ) -> StoredMessage:
        now = _now()
        self.db.execute("BEGIN")
        cur = self.db.execute(
            "INSERT INTO messages (conversation_id, role, content, created_at, stop_reason, sources, stats)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                conversation_id,
                role,
                content,
                now,
                stop_reason,
                json.dumps(sources) if sources is not None else None,
                json.dumps(stats) if stats is not None else None,
            ),
        )
        self.db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
        self.db.execute("COMMIT")
        return StoredMessage(cur.lastrowid, role, content, stop_reason, sources, stats)

    def delete_message(self, message_id: int) -> None:
        self.db.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    def delete(self, conversation_id: int) -> None:
        self.db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def messages(self, conversation_id: int) -> list[StoredMessage]:
        rows = self.db.execute(
            "SELECT id, role, content, stop_reason, sources, stats FROM messages"
            " WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        ).fetchall()
        return [
            StoredMessage(
                id,
                role,
                content,
                stop,
                tuple((int(n), str(s)) for n, s in json.loads(sources)) if sources else None,
                json.loads(stats) if stats else None,
            )
            for id, role, content, stop, sources, stats in rows
        ]

    def get(self, conversation_id: int) -> Conversation | None:
        found = self._select("WHERE c.id = ?", (conversation_id,))
        return found[0] if found else None

    def conversations(self, limit: int = 500) -> list[Conversation]:
        """Most recently active first."""
        return self._select("ORDER BY c.updated_at DESC, c.id DESC LIMIT ?", (limit,))

    def _select(self, tail: str, params: tuple) -> list[Conversation]:
        rows = self.db.execute(
            "SELECT c.id, c.title, c.model, c.system, c.temperature, c.top_p, c.max_tokens, c.created_at,"
            " c.updated_at, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id)"
            f" FROM conversations c {tail}",
            params,
        ).fetchall()
        return [
            Conversation(id, title, model, ChatSettings(system, temp, top_p, max_tokens), created, updated, n)
            for id, title, model, system, temp, top_p, max_tokens, created, updated, n in rows
        ]


def local_time(stamp: str) -> str:
    return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")


def title_for(first_message: str, width: int = 60) -> str:
    line = next((ln.strip() for ln in first_message.splitlines() if ln.strip()), "untitled")
    return line if len(line) <= width else line[: width - 1] + "…"


def to_markdown(conversation: Conversation, messages: list[StoredMessage]) -> str:
    """The chat as a Markdown document: a heading per turn, replies verbatim."""
    s = conversation.settings
    out = [
        f"# {conversation.title}",
        "",
        f"*{conversation.model} · temperature {s.temperature:g}, top-p {s.top_p:g} · {local_time(conversation.created_at)}*",
        "",
    ]
    if s.system:
        out += ["## System", "", s.system, ""]
    for m in messages:
        heading = "User" if m.role == "user" else "Assistant"
        if m.stop_reason == "cancelled":
            heading += " (cancelled)"
        out += [f"## {heading}", "", m.content, ""]
    return "\n".join(out)
