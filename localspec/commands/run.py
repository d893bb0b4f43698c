"""`localspec run`: one prompt through the engine, text or JSON out."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from localspec.errors import LocalspecError
from localspec.generate import GenerateOptions
from localspec.registry import METHODS
from localspec.verify import SamplingParams


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Flags every command that loads an engine shares."""
    p.add_argument("--target", help="model name from models.toml or a GGUF path")
    p.add_argument("--draft", help="draft model name or GGUF path (same vocabulary as the target)")
    p.add_argument("--pair", help="target/draft pair name from models.toml")
    p.add_argument(
        "--draft-max", type=draft_length, help="tokens drafted per step, or 'auto' to choose each step (default 4)"
    )
    p.add_argument("--p-min", type=probability, help="stop drafting when the draft's top probability is below this")
    p.add_argument("--n-ctx", type=positive_int, help="context size (default: models.toml, else 4096)")
    p.add_argument("--ngl", type=int, help="target layers to offload to the GPU (-1 = all)")
    p.add_argument("--ngl-draft", type=int, help="draft layers to offload to the GPU (-1 = all)")
    p.add_argument("--threads", type=positive_int, help="CPU threads (default: all cores)")
    p.add_argument(
        "--rpc", metavar="HOST:PORT[,...]", help="put the target's layers on these rpc-servers (localspec rpc-server)"
    )
    p.add_argument("--tensor-split", metavar="P1,P2,...", help="with --rpc: each device's share of the layers")
    p.add_argument(
        "--rpc-timeout", type=positive_float, metavar="S", help="with --rpc: seconds of silence that end a reply (60)"
    )


def register(sub) -> None:
    p = sub.add_parser("run", help="generate a reply to one prompt")
    add_model_args(p)
    p.add_argument("--method", choices=METHODS, help="drafting method (default: the pair's, else auto)")
    p.add_argument("--temp", type=non_negative_float, default=0.0, help="temperature; 0 = greedy (default)")
    p.add_argument("--top-k", type=non_negative_int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--max-tokens", type=positive_int, default=256)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt", help="prompt text")
    src.add_argument("--prompt-file", type=Path, help="file holding the prompt ('-' for stdin)")
    p.add_argument("--system", help="system message (chat mode)")
    p.add_argument("--raw", action="store_true", help="send the prompt as is, without the chat template")
    p.add_argument("--json", action="store_true", help="print one JSON object with text, tokens and stats")
    p.add_argument("--trace", action="store_true", help="with --json: per-token source and target margin")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from localspec.engine import load_engine

    prompt = read_prompt(args)
    sampling = SamplingParams(temp=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p, seed=args.seed)
    options = GenerateOptions(max_tokens=args.max_tokens, sampling=sampling, stop=tuple(args.stop), trace=args.trace)
    engine = load_engine(**engine_kwargs(args), method=args.method)
    for w in engine.warnings:
        print(f"localspec: warning: {w}", file=sys.stderr)
    try:
        if args.raw:
            gen = engine.complete(prompt, options)
        else:
            messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
                {"role": "user", "content": prompt}
            ]
            gen = engine.chat(messages, options)
        wrote = False
        try:
            for event in gen:
                if not args.json:
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                    wrote = wrote or bool(event.text)
        except LocalspecError:
            if wrote:
                sys.stdout.write("\n")  # the error line goes under the text written so far, not after it
            raise
        result = gen.result
        assert result is not None
        rpc_info = rpc_report(engine) if args.json else None
    finally:
        engine.close()

    stats = result.counters.to_dict()
    if args.json:
        out = {
            "text": result.text,
            "tokens": result.tokens,
            "stop_reason": result.stop_reason,
            "method": engine.method,
            "draft_max": engine.draft_max,
            "stats": stats,
        }
        if rpc_info is not None:
            out["rpc"] = rpc_info
        if args.trace:
            out["trace"] = [{"token": t.id, "source": t.source, "margin": t.margin} for t in result.trace]
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("\n")
        print(
            f"[{engine.method}] {stats['n_generated']} tokens, {stats['tokens_per_s']:.1f} tok/s, "
            f"acceptance {stats['acceptance_rate']:.0%}, {stats['tokens_per_step']:.2f} tokens/step, "
            f"stop: {result.stop_reason}",
            file=sys.stderr,
        )
    return 0


def rpc_report(engine) -> dict | None:
    """For --json over RPC: the servers, their devices, and one request-reply to each now (seconds)."""
    from localspec.remote import RemoteContext

    ctx = engine.target_ctx
    if not isinstance(ctx, RemoteContext):
        return None
    return {"endpoints": list(ctx.rpc.endpoints), "devices": ctx.devices, "rtt_s": ctx.ping()}


def engine_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        target=args.target,
        draft=args.draft,
        pair=args.pair,
        draft_max=args.draft_max,
        p_min=args.p_min,
        n_ctx=args.n_ctx,
        n_gpu_layers=args.ngl,
        n_gpu_layers_draft=args.ngl_draft,
        n_threads=args.threads,
        rpc=args.rpc,
        tensor_split=args.tensor_split,
        rpc_timeout=args.rpc_timeout,
    )


def read_prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None:
        text = args.prompt
    elif args.prompt_file is not None:
        if str(args.prompt_file) == "-":
            text = sys.stdin.read()
        else:
            try:
                text = args.prompt_file.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise LocalspecError(f"prompt file not found: {args.prompt_file}") from None
            except (OSError, UnicodeDecodeError) as e:
                raise LocalspecError(f"cannot read prompt file {args.prompt_file}: {e}") from None
    elif not sys.stdin.isatty():
        text = sys.stdin.read()
    else:
        raise LocalspecError("no prompt: give --prompt, --prompt-file or text on stdin")
    if not text.strip():
        raise LocalspecError("the prompt is empty")
    return text


def draft_length(s: str) -> int | str:
    return "auto" if s == "auto" else non_negative_int(s)


def positive_int(s: str) -> int:
    v = _number(int, s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {s}")
    return v


def non_negative_int(s: str) -> int:
    v = _number(int, s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {s}")
    return v


def non_negative_float(s: str) -> float:
    v = _number(float, s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {s}")
    return v


def positive_float(s: str) -> float:
    v = _number(float, s)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {s}")
    return v


def probability(s: str) -> float:
    v = _number(float, s)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {s}")
    return v


def _number(kind, s: str):
    try:
        v = kind(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if v != v:  # NaN
        raise argparse.ArgumentTypeError("not a number: nan")
    return v
