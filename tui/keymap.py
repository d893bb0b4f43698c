"""The user's key remapping: `[keymap]` in keymap.toml in the config directory.

Every key of the app is a Textual binding with an id; the file maps ids to
keys and is handed to `App.set_keymap`:

    [keymap]
    cycle_method = "f5"
    draft_more = "plus,right_square_bracket"   # several keys: commas, or a list

A mistake in the file never stops the app: `load_keymap` returns what it
could read plus one line per problem, which the app shows as notifications.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from localspec.registry import user_config_dir

KEYMAP_FILE = "keymap.toml"


def keymap_path() -> Path:
    return user_config_dir() / KEYMAP_FILE


def load_keymap(known_ids: set[str], path: Path | None = None) -> tuple[dict[str, str], list[str]]:
    """(binding id -> keys, problems) from the keymap file; a missing file is no problem."""
    path = path or keymap_path()
    if not path.is_file():
        return {}, []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        return {}, [f"{path}: not read ({e}); default keys in use"]
    table = data.get("keymap", {})
    if not isinstance(table, dict):
        return {}, [f"{path}: [keymap] must be a table"]
    keymap: dict[str, str] = {}
    problems = [f"{path}: unknown top-level key {k!r} (only [keymap])" for k in data if k != "keymap"]
    for binding_id, keys in table.items():
        if binding_id not in known_ids:
            problems.append(f"{path}: no key binding with id {binding_id!r} (ids: {', '.join(sorted(known_ids))})")
            continue
        if isinstance(keys, list) and keys and all(isinstance(k, str) and k.strip() for k in keys):
            keys = ",".join(k.strip() for k in keys)
        if not isinstance(keys, str) or not keys.strip():
            problems.append(f"{path}: keymap.{binding_id} must be a key name or a list of them")
            continue
        keymap[binding_id] = keys.strip()
    return keymap, problems
