#!/usr/bin/env python3
"""Does the chat cost speed? `localspec chat` in a real terminal against `localspec run`.

For each thread setting, on the same prompt and model flags: `localspec run
--json` (its stats.tokens_per_s), then `localspec chat` in a detached tmux
session of fixed size, the prompt typed in, the reply read back from the
chat's own SQLite history (a private data directory, seeded with one empty
chat whose settings fix the reply length and greedy sampling). Both numbers
are the engine's generation rate (prompt processing excluded), so the ratio
is what the UI costs; "UI thread CPU" is the share of one core the chat's own
thread used while the reply streamed, a cost that the ratio's run-to-run
noise does not hide. With --plain, also `localspec run --method none`: the
plain rate the chat's panel should be showing (its estimate is stored with
the reply and reported beside it).

usage (from the repository root; one heavy job at a time on a shared machine):
  .venv/bin/python scripts/chat_speed.py --prompt "..." [--max-tokens N]
      [--target T --draft D | --pair P] [--method M] [--draft-max K]
      [--threads default,1,2] [--repeats R] [--plain] [--json] [--require-same-text]

Each repeat runs run and chat (which goes first alternates from repeat to
repeat), then run --method none, so a drift of the machine lands on all of
them; the table shows medians, and "paired" is the
median of each repeat's own chat/run (with its range): on a guest whose speed
drifts by more than the UI costs, the ratio of neighbours is the one to read.
Exit status 1 when a step fails or, with --require-same-text, when a chat
reply differs from run's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

METHODS = "auto|none|draft|lookup|draft\\+lookup|mtp"
# The header once the engine is ready: "localspec — <model> · <method>" (not "no model loaded · …").
READY = re.compile(rf"localspec — (?!no model loaded).* · ({METHODS})( |$)", re.M)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_tmux()
    prompt = args.prompt if args.prompt is not None else Path(args.prompt_file).read_text(encoding="utf-8")
    rows = []
    for threads in args.threads.split(","):
        row: dict = {"threads": threads, "run": [], "chat": [], "plain_run": [], "chat_plain": [], "ui_share": [],
                     "same_text": True}  # fmt: skip
        for i in range(args.repeats):
            # Alternate which goes first, so a drift in the machine's speed weighs on both alike.
            if i % 2:
                chat = localspec_chat(args, prompt, threads)
                run = localspec_run(args, prompt, threads)
            else:
                run = localspec_run(args, prompt, threads)
                chat = localspec_chat(args, prompt, threads)
            row["run"].append(run["stats"]["tokens_per_s"])
            row["chat"].append(chat["stats"]["tokens_per_s"])
            row["chat_plain"].append(chat["stats"].get("plain_tokens_per_s"))
            row["ui_share"].append(chat["stats"].get("ui_cpu_share"))
            row["same_text"] &= chat["content"] == run["text"]
            row["tokens"] = (run["stats"]["n_generated"], chat["stats"]["n_generated"])
            row["run_text"], row["chat_text"] = run["text"], chat["content"]
            if args.plain:
                row["plain_run"].append(localspec_run(args, prompt, threads, method="none")["stats"]["tokens_per_s"])
            report_progress(row)
        rows.append(row)
    if args.json:
        json.dump({"settings": settings_of(args), "rows": rows}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_table(args, rows)
    if args.require_same_text and not all(r["same_text"] for r in rows):
        print("chat_speed: a chat reply differs from localspec run's", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt")
    src.add_argument("--prompt-file")
    p.add_argument("--max-tokens", type=int, default=256)
    for flag in ("--target", "--draft", "--pair", "--method", "--draft-max", "--n-ctx"):
        p.add_argument(flag)
    p.add_argument("--threads", default="default", help="comma-separated thread counts; 'default' passes none")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--plain", action="store_true", help="also time `localspec run --method none`")
    p.add_argument("--size", default="130x45", help="tmux window size, COLSxROWS")
    p.add_argument("--timeout", type=float, default=900, help="seconds for each stage")
    p.add_argument("--localspec", help="command that runs localspec (default: this Python's -m localspec)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--require-same-text", action="store_true")
    return p.parse_args(argv)


def settings_of(args) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("json",)}


def localspec_cmd(args) -> list[str]:
    return shlex.split(args.localspec) if args.localspec else [sys.executable, "-m", "localspec"]


def model_flags(args, threads: str, method: str | None = None) -> list[str]:
    flags = []
    for name in ("target", "draft", "pair", "draft_max", "n_ctx"):
        value = getattr(args, name)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    method = method or args.method
    if method is not None:
        flags += ["--method", method]
    if threads != "default":
        flags += ["--threads", threads]
    return flags


def localspec_run(args, prompt: str, threads: str, method: str | None = None) -> dict:
    cmd = [*localspec_cmd(args), "run", "--json", "--temp", "0", "--max-tokens", str(args.max_tokens),
           "--prompt", prompt, *model_flags(args, threads, method)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"chat_speed: localspec run failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def localspec_chat(args, prompt: str, threads: str) -> dict:
    """One reply from `localspec chat` in tmux: its stored content and stats."""
    from tui.store import ChatSettings, ChatStore

    work = Path(tempfile.mkdtemp(prefix="chat-speed-"))
    session = f"chat-speed-{os.getpid()}"
    store = ChatStore(work / "chats.db")
    # The chat opens the most recent conversation and replies with its settings.
    store.create("chat speed", "-", ChatSettings(max_tokens=args.max_tokens, temperature=0.0, top_p=1.0))
    store.close()
    cols, rows = args.size.split("x")
    chat = shlex.join([*localspec_cmd(args), "chat", *model_flags(args, threads)])
    shell = f"cd {shlex.quote(str(ROOT))} && LOCALSPEC_DATA_DIR={shlex.quote(str(work))} {chat}; echo \"localspec exited with $?\"; sleep 120"
    tmux("new-session", "-d", "-s", session, "-x", cols, "-y", rows, shell)
    try:
        wait(args, session, lambda screen: READY.search(screen), "the model to load")
        tmux("send-keys", "-t", session, "-l", prompt)
        tmux("send-keys", "-t", session, "Enter")
        # Only the database is watched while the reply streams, once a second: this script's own CPU
        # (a query, a tmux client for the screen) is taken from the chat's cores, and the rate it
        # reports is the chat's own, stored with the reply, so a late look changes nothing.
        reply = wait(args, session, lambda screen: stored_reply(work / "chats.db"), "the reply",
                     screen_every=20, poll_s=1.0)  # fmt: skip
        tmux("send-keys", "-t", session, "C-q")
        screen = wait(args, session, lambda screen: "localspec exited with" in screen and screen, "the chat to quit")
        if "localspec exited with 0" not in screen:
            sys.exit(f"chat_speed: localspec chat failed; the screen was:\n{screen}")
        return reply
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def stored_reply(db: Path) -> dict | None:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT content, stats FROM messages WHERE role = 'assistant' ORDER BY id DESC").fetchone()
    except sqlite3.Error:
        return None
    finally:
        con.close()
    return {"content": row[0], "stats": json.loads(row[1])} if row and row[1] else None


def wait(args, session: str, found, what: str, screen_every: int = 1, poll_s: float = 0.5):
    deadline = time.monotonic() + args.timeout
    polls = 0
    while True:
        screen = capture(session) if polls % screen_every == 0 else ""
        result = found(screen)
        if result:
            return result
        if "localspec exited with" in screen and what != "the chat to quit":
            sys.exit(f"chat_speed: localspec chat ended while waiting for {what}; the screen was:\n{screen}")
        if time.monotonic() > deadline:
            sys.exit(f"chat_speed: no {what} within {args.timeout:.0f} s; the screen was:\n{capture(session)}")
        polls += 1
        time.sleep(poll_s)


def tmux(*argv: str) -> None:
    subprocess.run(["tmux", *argv], check=True)


def capture(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def ensure_tmux() -> None:
    if shutil.which("tmux"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        if subprocess.run(["apt-get", "install", "-y", "tmux"], capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "tmux"], capture_output=True)
    if not shutil.which("tmux"):
        sys.exit("chat_speed: tmux is needed: apt-get install tmux")


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def report_progress(row: dict) -> None:
    ui = row["ui_share"][-1]
    ui_text = f", UI thread {ui:.1%} of a core" if ui is not None else ""
    print(f"chat_speed: threads {row['threads']}: run {row['run'][-1]:.1f} tok/s, chat {row['chat'][-1]:.1f} tok/s"
          f"{ui_text}", file=sys.stderr)  # fmt: skip


def print_table(args, rows: list[dict]) -> None:
    def f(v, spec=".1f"):
        return format(v, spec) if v is not None else "–"

    header = ["threads", "run tok/s", "chat tok/s", "chat/run", "paired (range)", "UI thread CPU", "panel plain", "run none", "panel/none",
              "same text"]  # fmt: skip
    print(" | ".join(header))
    for r in rows:
        run, chat, plain, none = median(r["run"]), median(r["chat"]), median(r["chat_plain"]), median(r["plain_run"])
        pairs = [c / n for c, n in zip(r["chat"], r["run"]) if c and n]
        paired = f"{median(pairs):.3f} ({min(pairs):.2f}-{max(pairs):.2f})" if pairs else "–"
        print(" | ".join([
            r["threads"], f(run), f(chat), f(chat / run if run and chat else None, ".3f"), paired,
            f(median(r["ui_share"]), ".1%"),
            f(plain), f(none),
            f(plain / none if plain and none else None, ".3f"), "yes" if r["same_text"] else "NO",
        ]))  # fmt: skip
    print(f"({args.repeats} repeat(s), {args.max_tokens} max tokens, tokens run/chat: "
          f"{', '.join(str(r.get('tokens')) for r in rows)})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
