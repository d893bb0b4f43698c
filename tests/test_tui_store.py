"""Chat storage and its migrations, Markdown export, the keymap file, pair choices."""

from __future__ import annotations

import sqlite3

import pytest

from tui import migrations
from tui.keymap import load_keymap
from tui.pairs import LoadRequest, pair_choices
from tui.store import ChatSettings, ChatStore, data_dir, title_for, to_markdown


def test_data_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALSPEC_DATA_DIR", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d"
    store = ChatStore()
    assert store.path == tmp_path / "d" / "chats.db" and store.path.is_file()
    store.close()


def test_migrations_are_recorded_and_run_once(tmp_path):
    store = ChatStore(tmp_path / "c.db")
    names = [m.__name__ for m in migrations.MIGRATIONS]
    assert migrations.applied(store.db) == names
    store.close()
    again = ChatStore(tmp_path / "c.db")
    assert migrations.migrate(again.db) == []
    again.close()


def test_an_old_database_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    assert migrations.migrate(db, upto="m001_conversations") == ["m001_conversations"]
    db.execute(
        "INSERT INTO conversations (title, model, temperature, top_p, max_tokens, created_at, updated_at)"
        " VALUES ('old chat', 'm', 0, 1, 10, '2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00+00:00')"
    )
    db.execute("INSERT INTO messages (conversation_id, role, content, created_at) VALUES (1, 'user', 'hi', 'x')")
    db.close()
    store = ChatStore(path)
    assert migrations.applied(store.db)[1:] == ["m002_reply_details", "m003_context_overflow", "m004_open_chats"]
    [old] = store.conversations()
    assert old.title == "old chat" and old.n_messages == 1
    assert old.settings.overflow == "rolling" and old.memory_from is None
    [message] = store.messages(old.id)
    assert (message.content, message.stop_reason, message.sources, message.stats) == ("hi", None, None, None)
    store.close()


def test_a_failing_migration_leaves_nothing_behind(tmp_path, monkeypatch):
    def m999_broken(db):
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("boom")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, m999_broken])
    with pytest.raises(RuntimeError):
        ChatStore(tmp_path / "c.db")
    db = sqlite3.connect(tmp_path / "c.db")
    assert "m999_broken" not in {r[0] for r in db.execute("SELECT name FROM _migrations")}
    assert not db.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchall()


def test_messages_round_trip_and_conversations_order(tmp_path):
    store = ChatStore(tmp_path / "c.db")
    settings = ChatSettings(system="be brief", temperature=0.5, top_p=0.9, max_tokens=64)
    first = store.create("first", "t + d", settings)
    second = store.create("second", "t", ChatSettings())
    store.add_message(first.id, "user", "hello")
    reply = store.add_message(
        first.id, "assistant", "hi there", stop_reason="cancelled", sources=((2, "d"), (6, "t")), stats={"n": 3}
    )
    assert [c.title for c in store.conversations()] == ["first", "second"]
    got = store.messages(first.id)
    assert [(m.role, m.content) for m in got] == [("user", "hello"), ("assistant", "hi there")]
    assert got[1] == reply and got[1].sources == ((2, "d"), (6, "t")) and got[1].stats == {"n": 3}
    assert store.get(first.id).settings == settings
    store.update_settings(second.id, settings)
    assert store.get(second.id).settings == settings
    store.update_message(reply.id, "hi there, again", stop_reason="eog", sources=((15, "t"),), stats=None)
    assert store.messages(first.id)[1] == reply.__class__(reply.id, "assistant", "hi there, again", "eog", ((15, "t"),))
    store.set_memory_from(first.id, reply.id)
    assert store.get(first.id).memory_from == reply.id
    store.update_settings(second.id, ChatSettings(overflow="stop"))
    assert store.get(second.id).settings.overflow == "stop"
    store.delete_message(reply.id)
    assert len(store.messages(first.id)) == 1
    store.delete(first.id)
    assert store.get(first.id) is None and store.messages(first.id) == []
    store.close()


def test_markdown_export_and_titles(tmp_path):
    store = ChatStore(tmp_path / "c.db")
    conv = store.create(title_for("\n  Fix my code please\nmore"), "qwen + draft", ChatSettings(system="You code."))
    store.add_message(conv.id, "user", "Fix `x`")
    store.add_message(conv.id, "assistant", "```py\nx = 1\n```", stop_reason="cancelled")
    md = to_markdown(conv, store.messages(conv.id))
    assert md.startswith("# Fix my code please\n")
    assert "qwen + draft · temperature 0, top-p 1" in md
    assert "## System\n\nYou code.\n" in md
    assert "## User\n\nFix `x`\n" in md
    assert "## Assistant (cancelled)\n\n```py\nx = 1\n```\n" in md
    assert title_for("x" * 100).endswith("…") and len(title_for("x" * 100)) == 60
    store.close()


def test_keymap_file(tmp_path):
    ids = {"send", "cycle_method"}
    assert load_keymap(ids, tmp_path / "none.toml") == ({}, [])
    good = tmp_path / "k.toml"
    good.write_text('[keymap]\nsend = "ctrl+s"\ncycle_method = ["f5", "ctrl+l"]\n')
    assert load_keymap(ids, good) == ({"send": "ctrl+s", "cycle_method": "f5,ctrl+l"}, [])
    bad = tmp_path / "b.toml"
    bad.write_text('colour = 1\n[keymap]\nsend = 3\nfly = "f9"\ncycle_method = "f6"\n')
    keymap, problems = load_keymap(ids, bad)
    assert keymap == {"cycle_method": "f6"}
    assert len(problems) == 3 and any("'fly'" in p for p in problems) and any("keymap.send" in p for p in problems)
    broken = tmp_path / "x.toml"
    broken.write_text("[keymap\n")
    keymap, [problem] = load_keymap(ids, broken)
    assert keymap == {} and "default keys in use" in problem


def test_load_request_arguments():
    request = LoadRequest(pair="p", method="lookup", extra={"n_ctx": 1024, "n_threads": None})
    assert request.load_kwargs() == dict(target=None, draft=None, pair="p", method="lookup", draft_max=None, n_ctx=1024)
    assert request.describe() == "pair p"
    assert LoadRequest(target="a", draft="b").describe() == "a + b"


def test_pair_choices_offer_only_vocabulary_compatible_drafts(tmp_path, monkeypatch, smollm2_path, tiny_f32_path):
    """A user registry with a compatible pair and an incompatible one (a tiny model
    whose vocabulary differs from SmolLM2's in two tokens)."""
    from gguf_fixtures import write_tiny_llama

    other_vocab = write_tiny_llama(tmp_path / "other.gguf", vocab_from=smollm2_path, seed=3)
    _shuffle_vocab(other_vocab)
    config = tmp_path / "config"
    config.mkdir()
    (config / "models.toml").write_text(
        f"""
[models.small]
sources = [{{ path = "{smollm2_path}" }}]
[models.tiny]
sources = [{{ path = "{tiny_f32_path}" }}]
[models.alien]
sources = [{{ path = "{other_vocab}" }}]
[pairs.good]
target = "small"
draft = "tiny"
method = "draft"
[pairs.bad]
target = "small"
draft = "alien"
method = "draft"
"""
    )
    monkeypatch.setenv("LOCALSPEC_CONFIG_DIR", str(config))
    choices = pair_choices("small")
    names = [c.request.pair for c in choices if c.request.pair]
    assert "good" in names and "bad" not in names
    local = [c.request for c in choices if c.request.target == "small"]
    assert LoadRequest(target="small", draft="tiny", method="auto") in local
    assert not any(r.draft == "alien" for r in local)


def _shuffle_vocab(path):
    """Swap two token texts in place (same lengths), so llama.cpp's vocabulary check fails."""
    data = bytearray(path.read_bytes())
    a, b = data.find(b"\x05\x00\x00\x00\x00\x00\x00\x00hello"), data.find(b"\x05\x00\x00\x00\x00\x00\x00\x00world")
    assert a > 0 and b > 0
    data[a + 8 : a + 13], data[b + 8 : b + 13] = data[b + 8 : b + 13], data[a + 8 : a + 13]
    path.write_bytes(bytes(data))


# -- a history file that is broken, foreign or cannot be written; two chats on one file


def test_a_file_that_is_not_a_database_is_moved_aside_and_a_new_one_started(tmp_path):
    path = tmp_path / "chats.db"
    junk = bytes(range(256)) * 64
    path.write_bytes(junk)
    store = ChatStore(path)
    [aside] = tmp_path.glob("chats.db.broken-*")
    assert aside.read_bytes() == junk  # never deleted
    assert store.saving and len(store.notices) == 1 and str(aside) in store.notices[0]
    conv = store.create("new", "m", ChatSettings())
    store.add_message(conv.id, "user", "hello")
    store.close()
    again = ChatStore(path)  # the new file is a good one: nothing to say
    assert again.notices == [] and [m.content for m in again.messages(conv.id)] == ["hello"]
    again.close()


def test_a_database_from_a_newer_localspec_is_left_untouched(tmp_path):
    path = tmp_path / "chats.db"
    store = ChatStore(path)
    store.create("kept", "m", ChatSettings())
    store.db.execute("INSERT INTO _migrations (name, applied_at) VALUES ('m999_from_the_future', 'x')")
    store.close()
    before = path.read_bytes()
    newer = ChatStore(path)
    assert not newer.saving and "newer localspec" in newer.notices[0] and "m999_from_the_future" in newer.notices[0]
    conv = newer.create("in memory", "m", ChatSettings())  # the chat works, in memory
    newer.add_message(conv.id, "user", "hi")
    assert [m.content for m in newer.messages(conv.id)] == ["hi"]
    newer.close()
    assert path.read_bytes() == before


def test_a_data_directory_that_cannot_be_made_keeps_nothing_but_works(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    store = ChatStore(tmp_path / "file" / "data" / "chats.db")
    assert not store.saving and "not being saved" in store.notices[0]
    conv = store.create("c", "m", ChatSettings())
    store.add_message(conv.id, "user", "hi")
    assert [c.title for c in store.conversations()] == ["c"]
    store.close()


@pytest.mark.parametrize("pragma", ["max_page_count = {pages}", "query_only = ON"], ids=["full", "read-only"])
def test_a_write_the_file_refuses_goes_on_in_memory_with_what_it_held(tmp_path, pragma):
    """Real SQLite failures: a database capped at its current size (SQLITE_FULL,
    as a full disk gives) and one made read-only (SQLITE_READONLY)."""
    path = tmp_path / "chats.db"
    store = ChatStore(path)
    conv = store.create("c", "m", ChatSettings())
    store.add_message(conv.id, "user", "before")
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA {pragma.format(pages=pages)}")
    long = "x" * 20_000  # more than a page: the file would have to grow
    stored = store.add_message(conv.id, "assistant", long)
    assert not store.saving and "not being saved" in store.notices[0]
    assert [m.content for m in store.messages(conv.id)] == ["before", long]
    assert stored.id == store.messages(conv.id)[-1].id
    store.add_message(conv.id, "user", "after")  # and goes on there
    assert len(store.notices) == 1
    store.close()
    assert [m.content for m in ChatStore(path).messages(conv.id)] == ["before"]


def test_two_chats_share_the_file_without_database_is_locked(tmp_path):
    import threading
    import time

    path = tmp_path / "chats.db"
    # Opened at once on a new file: both run the migrations; the second finds them done.
    opened: list[tuple[bool, list[str], str]] = []

    def open_and_write(title: str) -> None:
        store = ChatStore(path)
        store.create(title, "m", ChatSettings())
        opened.append((store.saving, store.notices, store.db.execute("PRAGMA journal_mode").fetchone()[0]))
        store.close()

    threads = [threading.Thread(target=open_and_write, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opened == [(True, [], "wal")] * 2
    a, b = ChatStore(path), ChatStore(path)
    ca, cb = (c for c in sorted(a.conversations(), key=lambda c: c.title))

    # A reader in the middle of a transaction does not stop the other's write (WAL) ...
    a.db.execute("BEGIN")
    a.db.execute("SELECT * FROM messages").fetchall()
    b.add_message(cb.id, "user", "while a reads")
    a.db.execute("COMMIT")
    # ... and a writer waits for another chat's write instead of failing.
    held = threading.Event()

    def write_slowly():
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE conversations SET title = 'b2' WHERE id = ?", (cb.id,))
        held.set()
        time.sleep(0.5)
        other.execute("COMMIT")
        other.close()

    t = threading.Thread(target=write_slowly)
    t.start()
    held.wait()
    a.add_message(ca.id, "user", "while b writes")
    t.join()
    assert a.saving and b.saving
    assert [m.content for m in a.messages(cb.id)] == ["while a reads"]
    assert [m.content for m in b.messages(ca.id)] == ["while b writes"]
    assert {c.title for c in a.conversations()} == {"a", "b2"}
    a.close()
    b.close()


def test_a_chat_claims_its_conversation_until_it_closes(tmp_path):
    import subprocess

    path = tmp_path / "chats.db"
    a, b = ChatStore(path), ChatStore(path)
    one, two = a.create("one", "m", ChatSettings()), a.create("two", "m", ChatSettings())
    a.claim(one.id)
    assert b.open_elsewhere() == {one.id} and a.open_elsewhere() == set()
    a.claim(two.id)  # one chat has one conversation open
    assert b.open_elsewhere() == {two.id}
    a.close()
    assert b.open_elsewhere() == set()
    # A chat that was killed leaves its claim behind; its process is gone, so it does not count.
    gone = subprocess.Popen(["true"])
    gone.wait()
    b.db.execute("INSERT INTO open_chats (owner, pid, conversation_id) VALUES ('killed', ?, ?)", (gone.pid, one.id))
    assert b.open_elsewhere() == set()
    b.close()
