"""What a response says about its generation, and the server's running totals.

`timings` uses llama-server's field names, so tools written for it read ours:
prompt_n tokens evaluated for this request and cache_n reused from the KV
prefix cache (prompt_n + cache_n = usage.prompt_tokens), predicted_n tokens
generated, draft_n drafted and draft_n_accepted accepted. `localspec` adds the
engine's own view: acceptance by draft position, steps per drafter, tokens per
step.
"""

from __future__ import annotations

import threading

from localspec.events import GenerationResult


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 3) if seconds > 0 else 0.0


def timings(result: GenerationResult, n_prompt: int) -> dict:
    c = result.counters
    prompt_n = max(0, n_prompt - c.n_prompt_cached)
    return {
        "cache_n": c.n_prompt_cached,
        "prompt_n": prompt_n,
        "prompt_ms": _ms(c.prompt_s),
        "prompt_per_token_ms": _ms(c.prompt_s / prompt_n) if prompt_n else 0.0,
        "prompt_per_second": _rate(prompt_n, c.prompt_s),
        "predicted_n": c.n_generated,
        "predicted_ms": _ms(c.gen_s),
        "predicted_per_token_ms": _ms(c.gen_s / c.n_generated) if c.n_generated else 0.0,
        "predicted_per_second": _rate(c.n_generated, c.gen_s),
        "draft_n": c.drafted,
        "draft_n_accepted": c.accepted,
    }


def localspec_stats(result: GenerationResult, methods: dict[str, int], method: str) -> dict:
    c = result.counters
    return {
        "method": method,  # the engine's setting; `methods` is what each step used
        "methods": methods,
        "steps": c.steps,
        "tokens_per_step": round(c.tokens_per_step, 4),
        "acceptance_rate": round(c.acceptance_rate, 4),
        "per_position_acceptance": [round(a, 4) for a in c.per_position_acceptance],
        "zero_accept_steps": c.zero_accept_steps,
        "draft_ms": _ms(c.draft_s),
        "verify_ms": _ms(c.verify_s),
        "stop_reason": result.stop_reason,
    }


def finish_reason(result: GenerationResult) -> str:
    return "length" if result.stop_reason in ("max_tokens", "context_full") else "stop"


def usage(result: GenerationResult, n_prompt: int, reasoning_tokens: int | None = None) -> dict:
    """OpenAI's usage; a chat completion's also says how many of its tokens
    were reasoning (`reasoning_tokens`: 0 for a model that does not think)."""
    n = result.counters.n_generated
    out = {"prompt_tokens": n_prompt, "completion_tokens": n, "total_tokens": n_prompt + n}
    if reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return out


_COUNTERS = {
    "requests": "Generation requests answered (complete or cancelled).",
    "requests_cancelled": "Generations stopped because the client went away.",
    "requests_rejected": "Requests turned away with 503 because the queue was full.",
    "invalid_requests": "Requests answered with a 4xx error.",
    "errors": "Requests that failed inside the server (500), or lost their rpc-servers (503).",
    "prompt_tokens": "Prompt tokens of answered requests.",
    "prompt_tokens_cached": "Prompt tokens reused from the KV prefix cache.",
    "tokens_generated": "Tokens generated.",
    "tokens_drafted": "Tokens drafted.",
    "tokens_accepted": "Drafted tokens the target accepted.",
    "steps": "Target verify passes.",
    "tool_calls": "Tool calls returned.",
    "tool_calls_malformed": "Tool calls the model wrote that did not parse (returned as content).",
}


class Metrics:
    """Running totals, safe to update from the engine thread and the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.totals = dict.fromkeys(_COUNTERS, 0)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                self.totals[name] += n

    def record(self, result: GenerationResult, n_prompt: int) -> None:
        c = result.counters
        self.add(
            requests=1,
            requests_cancelled=int(result.stop_reason == "cancelled"),
            prompt_tokens=n_prompt,
            prompt_tokens_cached=c.n_prompt_cached,
            tokens_generated=c.n_generated,
            tokens_drafted=c.drafted,
            tokens_accepted=c.accepted,
            steps=c.steps,
        )

    def exposition(self, gauges: dict[str, tuple[str, float]]) -> str:
        """Prometheus text format: counters, then `gauges` (name: (help, value))."""
        with self._lock:
            totals = dict(self.totals)
        lines = []
        for name, text in _COUNTERS.items():
            full = f"localspec_{name}_total"
            lines += [f"# HELP {full} {text}", f"# TYPE {full} counter", f"{full} {totals[name]}"]
        for name, (text, value) in gauges.items():
            full = f"localspec_{name}"
            lines += [f"# HELP {full} {text}", f"# TYPE {full} gauge", f"{full} {value:g}"]
        return "\n".join(lines) + "\n"
