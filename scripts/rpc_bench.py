"""Plain vs auto over llama.cpp's RPC backend: locally, over loopback, and over a link with added latency.

    sudo .venv/bin/python scripts/rpc_bench.py --out docs/rpc        # root: it makes a network namespace

Four settings, each with the same prompts, `--method none` then `--method auto`:
  local     the target on this machine (no RPC)
  loopback  two rpc-servers on 127.0.0.1, the target's layers split across both
  +N ms     the same two servers inside a network namespace, reached over a veth
            pair whose two ends each delay every packet by N ms (`tc netem`),
            so a round trip gains 2N ms; N = 1 and 5
Where the kernel has no netem (tc: "Specified qdisc kind is unknown", as in
the Firecracker VMs this project is measured on), the delay comes from a TCP
proxy in front of each server instead (`--proxy`, a child process): every
chunk it reads is written on N ms later, in order, in both directions, so a
round trip again gains 2N ms; bandwidth and segment timing are not modelled.
The namespace, the veth pair, proxies and servers are made at the start and
removed at the end, also when a run fails. Each RPC setting calibrates its own verify
curve (the calibration key holds the endpoints), so auto prices the round trip.
Round trips are measured, not assumed: the median of five device-memory
requests to each server on the worker's own connections (RemoteContext.ping).
Run it alone (under /tmp/cpu.lock on a shared machine): it is a benchmark.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

NS = "lsrpc"
HOST_IF, NS_IF = "lsrpc0", "lsrpc1"
HOST_IP, NS_IP = "10.77.0.1", "10.77.0.2"
PORTS = (50152, 50153)
PROMPTS = [
    "Add type hints to this function and return the whole code:\n\n```python\ndef area(w, h):\n    return w * h\n\n\n"
    "def perimeter(w, h):\n    return 2 * (w + h)\n```",
    "Write a Python function that parses a line of a CSV file with quoted fields, and a few tests for it.",
    "Explain what a hash map is and when to use one, in three short paragraphs.",
]


def sh(*cmd: str, check: bool = True) -> None:
    subprocess.run(cmd, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def netns_up() -> None:
    netns_down()
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
    sh("ip", "link", "set", NS_IF, "netns", NS)
    sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", HOST_IF)
    sh("ip", "link", "set", HOST_IF, "up")
    sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/24", "dev", NS_IF)
    sh("ip", "netns", "exec", NS, "ip", "link", "set", NS_IF, "up")
    sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")


def netns_down() -> None:
    sh("ip", "netns", "del", NS, check=False)  # takes the veth pair with it
    sh("ip", "link", "del", HOST_IF, check=False)


def set_delay(ms: float) -> None:
    for prefix in ((), ("ip", "netns", "exec", NS)):
        dev = NS_IF if prefix else HOST_IF
        sh(*prefix, "tc", "qdisc", "replace", "dev", dev, "root", "netem", "delay", f"{ms}ms")


def netem_works() -> bool:
    try:
        subprocess.run(["ip", "link", "add", "lsrpct0", "type", "veth", "peer", "name", "lsrpct1"], check=True,
                       capture_output=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return False
    ok = subprocess.run(["tc", "qdisc", "replace", "dev", "lsrpct0", "root", "netem", "delay", "1ms"],
                        capture_output=True).returncode == 0  # fmt: skip
    sh("ip", "link", "del", "lsrpct0", check=False)
    return ok


def proxy(listen_port: int, target_port: int, delay_s: float) -> None:
    """Forward 127.0.0.1:listen_port to 127.0.0.1:target_port, each chunk delayed by delay_s, in order."""
    import asyncio
    import socket

    async def pump(reader, writer) -> None:
        queue: asyncio.Queue = asyncio.Queue()

        async def later() -> None:
            while (item := await queue.get()) is not None:
                due, data = item
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(later())
        while data := await reader.read(1 << 20):
            queue.put_nowait((loop.time() + delay_s, data))
        queue.put_nowait(None)
        await sender

    async def client(reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        for w in (writer, up_writer):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer), return_exceptions=True)

    async def main() -> None:
        server = await asyncio.start_server(client, "127.0.0.1", listen_port)
        await server.serve_forever()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())


def start_proxies(delay_ms: float) -> list[subprocess.Popen]:
    from localspec import rpc

    procs = [subprocess.Popen([sys.executable, __file__, "--proxy", str(p + 100), str(p), str(delay_ms / 1000)])
             for p in PORTS]  # fmt: skip
    for p in PORTS:
        for _ in range(100):
            try:
                rpc.probe([f"127.0.0.1:{p + 100}"], timeout=1)
                break
            except Exception:
                time.sleep(0.1)
    return procs


def start_servers(host: str, netns: bool, threads: int) -> list[subprocess.Popen]:
    from localspec import rpc

    prefix = ["ip", "netns", "exec", NS] if netns else []
    procs = [
        subprocess.Popen([*prefix, sys.executable, "-m", "localspec", "rpc-server", "--host", host, "--port", str(p),
                          "--threads", str(threads)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in PORTS
    ]  # fmt: skip
    deadline = time.monotonic() + 30
    for p in PORTS:
        while True:
            try:
                rpc.probe([f"{host}:{p}"], timeout=1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def measure(pair: str, rpc: str | None, max_tokens: int) -> dict:
    from localspec.engine import load_engine
    from localspec.generate import GenerateOptions

    engine = load_engine(pair=pair, rpc=rpc)
    out: dict = {}
    try:
        for method in ("none", "auto"):
            engine.method = method
            tokens = gen_s = steps = 0.0
            for prompt in PROMPTS:
                gen = engine.chat([{"role": "user", "content": prompt}], GenerateOptions(max_tokens=max_tokens))
                for _ in gen:
                    pass
                c = gen.result.counters
                tokens, gen_s, steps = tokens + c.n_generated, gen_s + c.gen_s, steps + c.steps
            out[method] = {"tokens": tokens, "gen_s": gen_s, "tok_s": tokens / gen_s, "tokens_per_step": tokens / steps,
                           "s_per_step": gen_s / steps}  # fmt: skip
        if rpc:
            rtts = [engine.target_ctx.ping() for _ in range(3)]
            out["rtt_ms"] = {ep: 1000 * statistics.median(r[ep] for r in rtts) for ep in rtts[0]}
    finally:
        engine.close()
    return out


def main() -> int:
    if sys.argv[1:2] == ["--proxy"]:
        proxy(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="qwen2.5-coder")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="threads of each rpc-server")
    ap.add_argument("--delays", default="1,5", help="netem delays in ms, each end of the link")
    ap.add_argument("--out", type=Path, help="folder for results.json and table.md")
    ap.add_argument("--skip-local", action="store_true", help="only the settings with added latency (for a quick check)")
    args = ap.parse_args()

    from localspec.host import cpu_name

    results: dict = {"cpu": cpu_name(), "pair": args.pair, "max_tokens": args.max_tokens, "prompts": len(PROMPTS),
                     "settings": {}}  # fmt: skip
    if not args.skip_local:
        results["settings"]["local"] = measure(args.pair, None, args.max_tokens)
        procs = start_servers("127.0.0.1", False, args.threads)
        try:
            results["settings"]["loopback"] = measure(args.pair, ",".join(f"127.0.0.1:{p}" for p in PORTS), args.max_tokens)
        finally:
            stop(procs)
    delays = [float(d) for d in args.delays.split(",")]
    if netem_works():
        results["latency_by"] = "tc netem on both ends of a veth pair into a network namespace"
        netns_up()
        procs = []
        try:
            procs = start_servers(NS_IP, True, args.threads)
            for ms in delays:
                set_delay(ms)
                results["settings"][f"+{ms:g} ms each way"] = measure(
                    args.pair, ",".join(f"{NS_IP}:{p}" for p in PORTS), args.max_tokens
                )
        finally:
            stop(procs)
            netns_down()
    else:
        results["latency_by"] = "a delaying TCP proxy per server (this kernel has no sch_netem)"
        procs = start_servers("127.0.0.1", False, args.threads)
        try:
            for ms in delays:
                proxies = start_proxies(ms)
                try:
                    results["settings"][f"+{ms:g} ms each way"] = measure(
                        args.pair, ",".join(f"127.0.0.1:{p + 100}" for p in PORTS), args.max_tokens
                    )
                finally:
                    stop(proxies)
        finally:
            stop(procs)

    table = ["| setting | round trip (ms) | plain tok/s | auto tok/s | auto / plain | auto tokens/step | plain s/step | auto s/step |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in results["settings"].items():
        rtt = ", ".join(f"{v:.2f}" for v in r["rtt_ms"].values()) if "rtt_ms" in r else "-"
        n, a = r["none"], r["auto"]
        table.append(f"| {name} | {rtt} | {n['tok_s']:.1f} | {a['tok_s']:.1f} | {a['tok_s'] / n['tok_s']:.2f}x | "
                     f"{a['tokens_per_step']:.2f} | {n['s_per_step']:.3f} | {a['s_per_step']:.3f} |")  # fmt: skip
    print("\n".join(table))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        (args.out / "table.md").write_text("\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
