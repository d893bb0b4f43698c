#!/usr/bin/env bash
# Drive `localspec chat` in a real terminal (a detached tmux session): wait for
# the model to load, send a message, check that a reply appears and that the
# stats panel shows numbers, that `-` shortens the draft length (a fixed one,
# or auto's limit), then quit with Ctrl+Q and check the exit status.
# Then a conversation past the context: at --n-ctx 256, a story and ten turns
# of "Continue the story.", each answered (its summary line, no "Reply
# failed"), and the marker where the model's memory begins on screen.
#
# usage: scripts/tui_tmux_check.sh [MODEL] [METHOD]
#   MODEL   model name from models.toml or a GGUF path (default smollm2-135m)
#   METHOD  drafting method (default lookup: no second model, fast in CI)
# env:
#   LOCALSPEC  command that runs localspec (default .venv/bin/localspec, else python3 -m localspec)
#   TIMEOUT    seconds to wait for each stage (default 600: a first run fetches the model)
set -euo pipefail

model=${1:-smollm2-135m}
method=${2:-lookup}
timeout=${TIMEOUT:-600}
cd "$(dirname "$0")/.."

if ! command -v tmux >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y tmux >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y tmux >/dev/null; }
    else
        echo "tmux is needed: apt-get install tmux" >&2
        exit 2
    fi
fi
cmd=${LOCALSPEC:-}
if [ -z "$cmd" ]; then
    if [ -x .venv/bin/localspec ]; then cmd=.venv/bin/localspec; else cmd="python3 -m localspec"; fi
fi

work=$(mktemp -d)
session="localspec-check-$$"
cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A private data directory: the check neither reads nor adds to the user's chats.
tmux new-session -d -s "$session" -x 120 -y 40 \
    "LOCALSPEC_DATA_DIR='$work/data' $cmd chat --target '$model' --method '$method'; echo \"localspec exited with \$?\"; sleep 60"

screen() { tmux capture-pane -p -t "$session"; }

# wait_for DESCRIPTION EXTENDED-REGEX
wait_for() {
    local deadline=$((SECONDS + timeout))
    until screen | grep -Eq -- "$2"; do
        if [[ "$2" != *exited* ]] && screen | grep -q "localspec exited with"; then
            echo "FAIL: $1: localspec ended first; the screen was:" >&2
            screen >&2
            exit 1
        fi
        if ((SECONDS > deadline)); then
            echo "FAIL: $1: nothing matched /$2/ within ${timeout}s; the screen was:" >&2
            screen >&2
            exit 1
        fi
        sleep 1
    done
    echo "ok: $1"
}

method_re=$(printf '%s' "$method" | sed 's/[+.]/\\&/g')
wait_for "the model loaded" "localspec — .* · ${method_re}( |$)"
tmux send-keys -t "$session" "Write the numbers from 1 to 10 separated by commas." Enter
wait_for "the message was sent whole" "Write the numbers from 1 to 10 separated by commas\."
wait_for "a reply finished (its summary line)" "[1-9][0-9]* tokens · [0-9]+\.[0-9] tok/s"
wait_for "the stats panel shows the reply's speed" "tok/s +[0-9]+\.[0-9]"
wait_for "the stats panel counts tokens" "tokens +[1-9][0-9]*"
wait_for "the stats panel shows the plain rate" "plain +[0-9]+\.[0-9] tok/s"
draft_length() { screen | grep -oE "draft length (auto ≤ )?[0-9]+" | head -1; }
before=$(draft_length)
tmux send-keys -t "$session" -l -- "-"
wait_for "- shortened the ${before:-draft length}" "draft length (auto ≤ )?[0-9]+" >/dev/null
deadline=$((SECONDS + 10))
until [ "$(draft_length)" != "$before" ]; do
    if ((SECONDS > deadline)); then
        echo "FAIL: - left '$before' as it was; the screen was:" >&2
        screen >&2
        exit 1
    fi
    sleep 0.5
done
echo "ok: - changed '$before' to '$(draft_length)'"
tmux send-keys -t "$session" C-q
wait_for "the app quit cleanly" "localspec exited with 0"

# -- a conversation past the context ---------------------------------------------
tmux kill-session -t "$session"
db="$work/ctx/chats.db"
tmux new-session -d -s "$session" -x 120 -y 40 \
    "LOCALSPEC_DATA_DIR='$work/ctx' $cmd chat --target '$model' --method '$method' --n-ctx 256; echo \"localspec exited with \$?\"; sleep 60"
wait_for "the model loaded at --n-ctx 256" "localspec — .* · ${method_re}( |$)"

# The chat's own history: replies saved, the last one's token count, whether the window moved.
replies() {
    python3 - "$db" <<'PY'
import json, sqlite3, sys
try:
    db = sqlite3.connect(sys.argv[1])
    rows = db.execute("SELECT stats FROM messages WHERE role = 'assistant' ORDER BY id").fetchall()
    moved = db.execute("SELECT COUNT(*) FROM conversations WHERE memory_from IS NOT NULL").fetchone()[0]
except sqlite3.Error:
    rows, moved = [], 0
print(len(rows), json.loads(rows[-1][0])["n_generated"] if rows else 0, moved)
PY
}
marker=0
for turn in $(seq 0 10); do
    if [ "$turn" = 0 ]; then msg="Tell me a story about a fox who keeps a lighthouse."; else msg="Continue the story."; fi
    tmux send-keys -t "$session" "$msg" Enter
    deadline=$((SECONDS + timeout))
    until [ "$(replies | cut -d' ' -f1)" -gt "$turn" ]; do
        if screen | grep -q "Reply failed\|localspec exited with"; then
            echo "FAIL: turn $turn past the context: the reply failed; the screen was:" >&2
            screen >&2
            exit 1
        fi
        if ((SECONDS > deadline)); then
            echo "FAIL: turn $turn past the context: no reply within ${timeout}s; the screen was:" >&2
            screen >&2
            exit 1
        fi
        sleep 1
    done
    read -r _ n_generated _ <<<"$(replies)"
    wait_for "turn $turn past the context: its reply's summary line" "${n_generated} tokens · [0-9]+\.[0-9] tok/s" >/dev/null
    if screen | grep -q "Reply failed"; then
        echo "FAIL: turn $turn past the context: Reply failed; the screen was:" >&2
        screen >&2
        exit 1
    fi
    if screen | grep -q "memory begins here"; then marker=1; fi
done
echo "ok: eleven turns at --n-ctx 256, each with its reply summary line"
read -r _ _ moved <<<"$(replies)"
if [ "$marker" != 1 ] || [ "$moved" != 1 ]; then
    echo "FAIL: the marker of where the model's memory begins never showed (window moved: $moved); the screen was:" >&2
    screen >&2
    exit 1
fi
echo "ok: the marker showed where the model's memory begins"
tmux send-keys -t "$session" C-q
wait_for "the app quit cleanly" "localspec exited with 0"
echo "PASS: localspec chat --target $model --method $method"
