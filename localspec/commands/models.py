"""`localspec pull`, `localspec models`, `localspec doctor`: what is on this machine.

What is found where is localspec.inventory's (the chat's pair picker uses it
too); this module prints it.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import platform

from localspec.errors import LocalspecError
from localspec.fetch import cached_path
from localspec.gguf_info import read_gguf_info
from localspec.host import cpu_name, memory_info
from localspec.inventory import inventory
from localspec.registry import Registry, load_registry
from localspec.resolve import ensure_local

# Compute buffers, the draft's KV cache slack, the Python process itself.
RUNTIME_OVERHEAD_BYTES = 500 * 2**20


def register(sub) -> None:
    p = sub.add_parser("pull", help="download a model, or both models of a pair, into the cache")
    p.add_argument("name", help="model or pair name from models.toml")
    p.set_defaults(func=handle_pull)
    p = sub.add_parser("models", help="list known and on-disk GGUF models and which can draft for which")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=handle_models)
    p = sub.add_parser("doctor", help="check llama.cpp, memory and models, and say what to run next")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--rpc", metavar="HOST:PORT[,...]", help="also list these rpc-servers' devices (default: the default pair's)")
    p.set_defaults(func=handle_doctor)


def handle_pull(args: argparse.Namespace) -> int:
    reg = load_registry()
    if args.name in reg.pairs:
        pair = reg.pairs[args.name]
        names = [n for n in (pair.target, pair.draft) if n]
    elif args.name in reg.models:
        names = [args.name]
    else:
        close = difflib.get_close_matches(args.name, [*reg.models, *reg.pairs], n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join([*reg.pairs, *reg.models])}"
        raise LocalspecError(f"no model or pair named {args.name!r}{hint}")
    for name in names:
        print(f"{name}\t{ensure_local(reg.models[name], progress=True)}")
    return 0


def handle_models(args: argparse.Namespace) -> int:
    reg = load_registry()
    entries = inventory(reg)
    if args.json:
        pairs = [vars(p) for p in reg.pairs.values()]
        print(json.dumps({"models": [e.as_json() for e in entries], "pairs": pairs,
                          "default_pair": reg.default_pair}, indent=2))  # fmt: skip
        return 0
    print(f"{'MODEL':<28} {'STATE':<8} {'SIZE':>8}  {'ARCH':<8} {'VOCAB':<12} DRAFTS")
    for e in entries:
        state = "local" if e.info else ("broken" if e.error else "missing")
        size = "?" if e.size is None else f"{e.size / 1e6:.0f} MB" if e.size >= 1e6 else f"{e.size} B"
        arch = e.info.architecture if e.info else ""
        vocab = f"{e.info.vocab.type} {e.info.vocab.n_tokens}" if e.info else ""
        print(f"{e.name:<28} {state:<8} {size:>8}  {arch:<8} {vocab:<12} {', '.join(e.drafts) or '-'}")
        if e.error:
            print(f"  {e.error}")
    print("\npairs:")
    for p in reg.pairs.values():
        mark = " (default)" if p.name == reg.default_pair else ""
        models = f"{p.target} + {p.draft}" if p.draft else p.target
        print(f"  {p.name}{mark}: {models}, method {p.method}, draft_max {p.draft_max}")
    return 0


def pair_needs(reg: Registry, name: str | None) -> dict:
    """Bytes the pair needs resident: weights plus f16 KV cache at each model's n_ctx."""
    if name is None or name not in reg.pairs:
        return {}
    pair = reg.pairs[name]
    total, known, local = RUNTIME_OVERHEAD_BYTES, True, True
    for model in filter(None, (pair.target, pair.draft)):
        spec = reg.models[model]
        path = cached_path(spec)
        local &= path is not None
        info = read_gguf_info(path) if path else None
        per_token = info.kv_bytes_per_token() if info else None
        weights = info.file_size if info else spec.size
        known &= weights is not None and per_token is not None
        total += (weights or 0) + (per_token or 0) * spec.n_ctx
    return {"pair": name, "bytes": total, "estimate_complete": known, "local": local,
            "models": [m for m in (pair.target, pair.draft) if m]}  # fmt: skip


def handle_doctor(args: argparse.Namespace) -> int:
    import llama_cpp

    from localspec import llama_build

    system_info = llama_cpp.llama_print_system_info().decode(errors="replace").strip(" |")
    build = llama_build.describe(system_info)
    reg = load_registry()
    entries = [e for e in inventory(reg) if e.info]
    mem = memory_info()
    need = pair_needs(reg, reg.default_pair)
    report = {
        "python": platform.python_version(),
        "llama_cpp_python": llama_cpp.__version__,
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "system_info": system_info,
        "build": build,
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory": mem,
        "default_pair": need,
        "mtp": {e.name: e.info.nextn_predict_layers for e in entries if e.info},
        "verify_curve": _verify_curve(reg),
        "layout": _layout_hint(reg, entries, _has_local_gpu()),
        "rpc": _rpc(args.rpc or list(reg.pairs[reg.default_pair].rpc if reg.default_pair in reg.pairs else ())),
        "next": _next_steps(reg, need, mem),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    gib = 2**30
    print(f"llama-cpp-python {report['llama_cpp_python']} (Python {report['python']})")
    print(f"GPU offload: {'available' if report['gpu_offload'] else 'not in this build (CPU only)'}")
    print(f"backend: {report['system_info']}")
    for line in _build_lines(build):
        print(line)
    print(f"CPU: {report['cpu']}; {report['usable_cores']} cores usable of {report['cpu_cores']}")
    if mem:
        print(f"memory: {mem['MemAvailable'] / gib:.1f} GiB available of {mem['MemTotal'] / gib:.1f} GiB")
    if need:
        approx = "" if need["estimate_complete"] else " (weights only; fetch the models for a full estimate)"
        print(f"default pair {need['pair']} needs about {need['bytes'] / gib:.1f} GiB{approx}")
    for name, layers in report["mtp"].items():
        print(f"{name}: {f'{layers} MTP layer(s), can self-draft' if layers else 'no MTP heads'}")
    if report["verify_curve"]:
        from localspec.commands.curve import summary

        v = report["verify_curve"]
        print(f"verify curve of {v['model']} here: {summary({int(n): s for n, s in v['verify_s'].items()})}")
    if report["layout"]:
        h = report["layout"]
        print(f"layout: {h['q6_k_share']:.0%} of {h['model']}'s weights are Q6_K, which llama.cpp does not repack "
              f"on x86, so every verified row pays them in full; `{h['command']}` writes a copy without them "
              "and measures both files' curves here (opt-in: a requantized copy, its agreement printed)")  # fmt: skip
    for line in _rpc_lines(report["rpc"]):
        print(line)
    for step in report["next"]:
        print(f"next: {step}")
    return 0


def _rpc(endpoints) -> dict:
    """Whether this build has the RPC backend and its rpc-server, and the devices of `endpoints` with their memory."""
    import llama_cpp

    from localspec import llama_build, rpc

    server = llama_build.rpc_server_path()
    out: dict = {"supported": bool(llama_cpp.llama_supports_rpc()), "rpc_server": str(server) if server else None}
    if endpoints:
        try:
            out["devices"] = rpc.list_devices(rpc.parse_endpoints(endpoints))
        except LocalspecError as e:
            out["error"] = str(e)
    return out


def _rpc_lines(r: dict) -> list[str]:
    if not r["supported"]:
        return ["RPC: not in this build of llama-cpp-python (make install builds it with GGML_RPC=ON)"]
    lines = [f"RPC: backend built in; rpc-server: {r['rpc_server'] or 'not built (make install)'}"]
    mib = 2**20
    for d in r.get("devices", []):
        lines.append(f"RPC device {d['name']}: {d['description']}, {d['free'] / mib:.0f} MiB free of {d['total'] / mib:.0f} MiB")
    if "error" in r:
        lines.append(f"RPC: {r['error']}")
    return lines


def _default_target(reg: Registry):
    """The default pair's target model (its spec), or None without one."""
    pair = reg.pairs.get(reg.default_pair or "")
    return reg.models.get(pair.target) if pair else None


def _verify_curve(reg: Registry) -> dict | None:
    """What calibration measured for the default pair's target on this machine
    (None before its first run here): doctor measures nothing itself."""
    from localspec.backend import default_threads
    from localspec.calibrate import cached_curve

    spec = _default_target(reg)
    path = cached_path(spec) if spec else None
    curve = cached_curve(path, default_threads(), spec.n_gpu_layers) if path else None
    return {"model": spec.name, "verify_s": curve} if curve and 1 in curve else None


def _has_local_gpu() -> bool:
    """Whether llama.cpp sees a GPU here (an RPC build reports "GPU offload" without one)."""
    from localspec.rpc import Ggml

    try:
        return bool(Ggml().local_gpus())
    except (LocalspecError, OSError, AttributeError):  # no ggml library, or one without these calls
        return False


def _layout_hint(reg: Registry, entries, local_gpu: bool) -> dict | None:
    """The default target's share of Q6_K weights, where it runs on an x86
    CPU and has them (None otherwise). llama.cpp repacks its x86 Q4_K, Q4_0
    and IQ4_NL matrices into multi-row kernels but never Q6_K, so those
    weights cost every verified row in full; an all-Q4_K copy decoded faster
    on the Zen 4 and Zen 5 EPYCs measured (docs/benchmarks.md), but the
    machine decides, so doctor names the command that measures it here."""
    from localspec.gguf_info import Q6_K

    spec = _default_target(reg)
    info = next((e.info for e in entries if spec and e.name == spec.name and e.info), None)
    if info is None or platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    if local_gpu and spec.n_gpu_layers != 0:
        return None  # the weights run on the GPU: the CPU's kernels do not price its rows
    q6 = info.elements_by_type.get(Q6_K, 0)
    if not q6 or not info.n_params:
        return None
    return {"model": spec.name, "q6_k_share": q6 / info.n_params, "command": f"localspec layout {spec.name} --to q4_k"}


def _build_lines(build: dict) -> list[str]:
    by = build["compiler"].replace("GCC: ", "GCC ") or "an unknown compiler"
    guard = ", AMX off (GCC < 13 guard)" if build["amx_guard"] else ""
    lines = [f"build: CPU features {' '.join(build['features']) or 'none reported'}; compiled by {by}{guard}"]
    if build["amx_crash_risk"]:
        lines.append("warning: this llama-cpp-python uses AMX and was compiled by GCC < 13, which crashes on this "
                     "CPU at the first decode; localspec loads models without the AMX kernels (slower): "
                     "rebuild with `make install`")  # fmt: skip
    elif not build["matches_this_machine"]:
        lines.append("note: llama-cpp-python was not built by localspec for this CPU, compiler and CMAKE_ARGS "
                     "(a cached wheel may be another machine's); `make install` rebuilds it if needed")  # fmt: skip
    return lines


def _next_steps(reg: Registry, need: dict, mem: dict[str, int] | None) -> list[str]:
    if not need:
        return ["add a [pairs.NAME] and default_pair to your models.toml (see docs/models.md)"]
    steps = []
    if mem and need["bytes"] > mem["MemAvailable"]:
        steps.append("the default pair needs more memory than is available: pick a smaller pair "
                     "with --pair, or add one to models.toml")  # fmt: skip
    if not need["local"]:
        steps.append(f"localspec pull {need['pair']}")
    steps.append(f"localspec chat --pair {need['pair']}")
    return steps

