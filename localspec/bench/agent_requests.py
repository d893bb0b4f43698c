"""A coding agent's requests, as the agent-request benchmark
(scripts/agent_request_speed.py) sends them and the tool-call tests send
them too: the tools, the file the edit rewrites, the prompts."""

from __future__ import annotations

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WRITE = {
    "type": "function",
    "function": {
        "name": "write_file",
        "description": "Write a file, replacing what it held",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
}
# An agent's system prompt: what to call, and what to do with a result.
SYSTEM = (
    "You are a helpful assistant with tools. Use get_weather for weather questions and write_file to save files. "
    "Once a tool response is given, answer the user in plain words from it."
)
SHAPES = '''def area(w, h):
    return w * h


def perimeter(w, h):
    return 2 * (w + h)


def scale(shape, factor):
    return {"w": shape["w"] * factor, "h": shape["h"] * factor}


def describe(shape):
    return f"{shape['w']} by {shape['h']}: area {area(shape['w'], shape['h'])}"
'''
# The edit: the call's arguments carry the whole file, rewritten (copied from the prompt).
EDIT = f"Add type hints to every function in shapes.py and save the whole file with write_file.\n\nshapes.py:\n```python\n{SHAPES}```"
