"""Conversations on disk: one SQLite file in the user data directory.

`$LOCALSPEC_DATA_DIR` overrides the directory (the tests use a temporary
one). All access happens on the UI thread; the writes are a few rows per
reply.

The chat never stops for its history file. Two chats may share it (WAL: a
reader never blocks a writer; a busy timeout: a writer waits for the
other's write, a few rows, instead of failing "database is locked"). A file
that is not a database is moved aside, never deleted, and a new one started;
one written by a newer localspec is left untouched; a directory that cannot
be written (read-only, full) keeps nothing. In the last two cases, and when
a write fails later, the store goes on in memory (with what the file held,
where it can still be read), so the chat works the same and only saves
nothing. `notices` holds what the chat should tell the user, once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TypeVar

from tui.migrations import migrate, unknown

DB_NAME = "chats.db"
BUSY_S = 10.0  # how long a write waits for another chat's write before failing
BROKEN = ("SQLITE_NOTADB", "SQLITE_CORRUPT")  # the file is not (or no longer) a database
T = TypeVar("T")
_LIVE: set[str] = set()  # the owners of this process's open stores (open_chats.owner)
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
    overflow: str = "rolling"  # past the context: "rolling" (the oldest turns leave it) or "stop" (tui.window)


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    model: str
    settings: ChatSettings
    created_at: str
    updated_at: str
    n_messages: int = 0
    memory_from: int | None = None  # the message the model's memory begins at (None: the first)


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


class NewerDatabase(Exception):
    pass


class ChatStore:
    def __init__(self, path: Path | None = None):
        self.path = path or data_dir() / DB_NAME
        self.saving = True  # False: in memory only, nothing reaches the file
        self.notices: list[str] = []  # for the user, once each (the app takes them)
        self.owner = uuid.uuid4().hex  # this chat, in open_chats
        self.db = self._open()
        _LIVE.add(self.owner)

    # -- opening, and going on without the file ---------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            return self._open_file()
        except NewerDatabase as e:
            return self._in_memory(
                f"{self.path} was written by a newer localspec (it has {e}); it is left as it is, "
                "and this chat's history is not being saved."
            )
        except sqlite3.DatabaseError as e:
            if getattr(e, "sqlite_errorname", "") not in BROKEN:
                return self._in_memory(self._not_saving(e))
        except OSError as e:
            return self._in_memory(self._not_saving(e))
        aside = self.path.with_name(f"{self.path.name}.broken-{datetime.now().strftime('%Y-%m-%d-%H%M%S')}")
        try:
            for suffix in ("", "-wal", "-shm"):  # the journal files are part of what the file held
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    part.rename(f"{aside}{suffix}")
            db = self._open_file()
        except (OSError, sqlite3.Error, NewerDatabase) as e:
            return self._in_memory(self._not_saving(e))
        self.notices.append(
            f"The chat history {self.path} could not be read; it was moved to {aside} and a new one started."
        )
        return db

    def _open_file(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: every write below is one statement or an explicit transaction.
        db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_S)
        try:
            db.execute("PRAGMA foreign_keys = ON")
            newer = unknown(db)  # before anything writes: a newer file stays as it is
            if newer:
                raise NewerDatabase(", ".join(newer))
            db.execute("PRAGMA journal_mode = WAL")
            migrate(db)
        except BaseException:
            db.close()
            raise
        return db

    def _not_saving(self, error: Exception) -> str:
        return f"History is not being saved: {self.path} cannot be written ({error})."

    def _in_memory(self, notice: str, copy_of: sqlite3.Connection | None = None) -> sqlite3.Connection:
        self.saving = False
        self.notices.append(notice)
        db = sqlite3.connect(":memory:", isolation_level=None)
        if copy_of is not None:
            try:  # what the file held goes on: the open chat's history, the picker's list
                copy_of.backup(db)
            except sqlite3.Error:
                pass
        db.execute("PRAGMA foreign_keys = ON")
        migrate(db)
        return db

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the database; if the file fails it (disk full, made
        read-only, an I/O error), go on in memory from what it held, and run it there."""
        try:
            return fn(self.db)
        except sqlite3.DatabaseError as e:
            # The file's failures only (full, read-only, I/O, corrupt); a bug's
            # IntegrityError or ProgrammingError is raised as it is.
            if not self.saving or not (isinstance(e, sqlite3.OperationalError) or type(e) is sqlite3.DatabaseError):
                raise
            failed = self.db
            if failed.in_transaction:
                try:
                    failed.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            self.db = self._in_memory(self._not_saving(e), copy_of=failed)
            failed.close()
            return fn(self.db)

    def close(self) -> None:
        _LIVE.discard(self.owner)
        try:
            self.claim(None)
        except sqlite3.Error:  # the chat is ending: a claim left behind is a dead process's, ignored
            pass
        self.db.close()

    # -- which chat has which conversation open -----------------------------------------

    def claim(self, conversation_id: int | None) -> None:
        """Mark `conversation_id` as open in this chat (None: none), so a chat
        started meanwhile does not open it too."""
        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM open_chats WHERE owner = ?", (self.owner,))
            if conversation_id is not None:
                db.execute(
                    "INSERT INTO open_chats (owner, pid, conversation_id) VALUES (?, ?, ?)",
                    (self.owner, os.getpid(), conversation_id),
                )

        self._run(write)

    def open_elsewhere(self) -> set[int]:
        """Conversations another running chat has open. A chat that ended
        without closing (killed) left a claim whose process is gone: ignored."""
        rows = self._run(lambda db: db.execute("SELECT owner, pid, conversation_id FROM open_chats").fetchall())
        return {c for owner, pid, c in rows if owner != self.owner and _alive(owner, pid)}

    # -- conversations and messages ---------------------------------------------------

    def create(self, title: str, model: str, settings: ChatSettings) -> Conversation:
        now = _now()
        s = settings
        cur = self._run(lambda db: db.execute(
            "INSERT INTO conversations (title, model, system, temperature, top_p, max_tokens, overflow, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (title, model, s.system, s.temperature, s.top_p, s.max_tokens, s.overflow, now, now),
        ))  # fmt: skip
        return Conversation(cur.lastrowid, title, model, settings, now, now)

    def update_settings(self, conversation_id: int, settings: ChatSettings) -> None:
        s = settings
        self._run(lambda db: db.execute(
            "UPDATE conversations SET system = ?, temperature = ?, top_p = ?, max_tokens = ?, overflow = ?,"
            " updated_at = ? WHERE id = ?",
            (s.system, s.temperature, s.top_p, s.max_tokens, s.overflow, _now(), conversation_id),
        ))  # fmt: skip

    def set_memory_from(self, conversation_id: int, message_id: int | None) -> None:
        self._run(lambda db: db.execute(
            "UPDATE conversations SET memory_from = ? WHERE id = ?", (message_id, conversation_id)
        ))  # fmt: skip

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
        row = (
            conversation_id,
            role,
            content,
            now,
            stop_reason,
            json.dumps(sources) if sources is not None else None,
            json.dumps(stats) if stats is not None else None,
        )

        def insert(db: sqlite3.Connection) -> int | None:
            db.execute("BEGIN IMMEDIATE")  # a write from the start: waits for another chat's, never deadlocks
            cur = db.execute(
                "INSERT INTO messages (conversation_id, role, content, created_at, stop_reason, sources, stats)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
            db.execute("COMMIT")
            return cur.lastrowid

        return StoredMessage(self._run(insert), role, content, stop_reason, sources, stats)

    def update_message(
        self, message_id: int, content: str, *, stop_reason: str | None, sources: Runs | None, stats: dict | None
    ) -> None:
        """A reply continued past a full context: the same message, grown."""
        self._run(lambda db: db.execute(
            "UPDATE messages SET content = ?, stop_reason = ?, sources = ?, stats = ? WHERE id = ?",
            (content, stop_reason, json.dumps(sources) if sources is not None else None,
             json.dumps(stats) if stats is not None else None, message_id),
        ))  # fmt: skip

    def delete_message(self, message_id: int) -> None:
        self._run(lambda db: db.execute("DELETE FROM messages WHERE id = ?", (message_id,)))

    def delete(self, conversation_id: int) -> None:
        self._run(lambda db: db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)))

    def messages(self, conversation_id: int) -> list[StoredMessage]:
        rows = self._run(lambda db: db.execute(
            "SELECT id, role, content, stop_reason, sources, stats FROM messages"
            " WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        ).fetchall())  # fmt: skip
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
        rows = self._run(lambda db: db.execute(
            "SELECT c.id, c.title, c.model, c.system, c.temperature, c.top_p, c.max_tokens, c.overflow, c.created_at,"
            " c.updated_at, (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id), c.memory_from"
            f" FROM conversations c {tail}",
            params,
        ).fetchall())  # fmt: skip
        return [
            Conversation(
                id, title, model, ChatSettings(system, temp, top_p, max_tokens, overflow), created, updated, n, memory
            )
            for id, title, model, system, temp, top_p, max_tokens, overflow, created, updated, n, memory in rows
        ]


def _alive(owner: str, pid: int) -> bool:
    if pid == os.getpid():
        return owner in _LIVE
    if os.name != "posix":  # os.kill there would end the process; a claim may then outlive its chat
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


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
