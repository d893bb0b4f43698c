"""Schema migrations for the chat database, applied once each and recorded.

Each migration is a function registered with `@migration`, run in
registration order inside its own transaction; its name goes into the
`_migrations` table when it commits, so opening a database written by an
older version applies exactly the steps it lacks. Never edit a migration
that has shipped: add a new one (the pattern of simonw/llm's migrations.py).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from typing import Callable

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


def applied(db: sqlite3.Connection) -> list[str]:
    """Names of the migrations this database has had, oldest first."""
    rows = db.execute("SELECT name FROM _migrations ORDER BY applied_at, rowid").fetchall()
    return [r[0] for r in rows]


def unknown(db: sqlite3.Connection) -> list[str]:
    """Migrations this database has had that this version does not know: it was
    written by a newer localspec. Reads only (and is the first read of the file)."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = '_migrations'").fetchall():
        return []
    known = {fn.__name__ for fn in MIGRATIONS}
    return [name for name in applied(db) if name not in known]


def migrate(db: sqlite3.Connection, upto: str | None = None) -> list[str]:
    """Apply the migrations not yet recorded (stopping after `upto` if given);
    returns the names applied now. `db` must be in autocommit mode
    (isolation_level=None) so each migration is one explicit transaction."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = set(applied(db))
    now_applied = []
    for fn in MIGRATIONS:
        if fn.__name__ not in done and _apply(db, fn):
            now_applied.append(fn.__name__)
        if fn.__name__ == upto:
            break
    return now_applied


def _apply(db: sqlite3.Connection, fn: Migration) -> bool:
    # IMMEDIATE: two chats opening one new file at once both find the migration
    # missing; the second waits for the first's write lock (the busy timeout)
    # and then, looking again inside its own transaction, finds it done.
    db.execute("BEGIN IMMEDIATE")
    if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (fn.__name__,)).fetchall():
        db.execute("COMMIT")
        return False
    try:
        fn(db)
        db.execute(
            "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
            (fn.__name__, datetime.now(timezone.utc).isoformat()),
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return True


@migration
def m001_conversations(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            model TEXT NOT NULL,
            system TEXT NOT NULL DEFAULT '',
            temperature REAL NOT NULL,
            top_p REAL NOT NULL,
            max_tokens INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            content TEXT NOT NULL,
            created_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX messages_by_conversation ON messages (conversation_id, id)")


@migration
def m002_reply_details(db: sqlite3.Connection) -> None:
    # Why a reply ended (a cancelled one is kept and marked), which tokens came
    # from accepted drafts (runs of [n_chars, "d"|"t"], JSON) and its counters
    # (JSON), so a reopened chat shows the same colours and numbers.
    db.execute("ALTER TABLE messages ADD COLUMN stop_reason TEXT")
    db.execute("ALTER TABLE messages ADD COLUMN sources TEXT")
    db.execute("ALTER TABLE messages ADD COLUMN stats TEXT")


@migration
def m003_context_overflow(db: sqlite3.Connection) -> None:
    # What the chat does when the conversation outgrows the context ("rolling":
    # the oldest turns leave the model's context, "stop"), and the message the
    # model's memory begins at under the rolling window (NULL: the first).
    db.execute("ALTER TABLE conversations ADD COLUMN overflow TEXT NOT NULL DEFAULT 'rolling'")
    db.execute("ALTER TABLE conversations ADD COLUMN memory_from INTEGER")


@migration
def m004_open_chats(db: sqlite3.Connection) -> None:
    # Which conversation each running chat has open (its process and its store),
    # so a second chat started meanwhile opens another one (tui.store.ChatStore.claim).
    db.execute(
        """CREATE TABLE open_chats (
            owner TEXT PRIMARY KEY,
            pid INTEGER NOT NULL,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE
        )"""
    )
