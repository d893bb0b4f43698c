"""Weigh lookup estimates layered per reply (reply-layer.diff applied to
localspec/controller.py) against the planner as it is, in replay, as the
bench meets each text (PAPPAP): reply_prior None is the planner as it is,
1-8 the weight of the long-run estimate in a new reply. Output: reply-layer.txt.

    python docs/planner-replay/reply-layer-weigh.py $(ls docs/*/results.json | grep -v "llama-server\|layouts\|rpc\|agent")
"""

import json, sys, math
from collections import defaultdict
from localspec.bench import replay as R
from localspec.bench.texts import plain_texts
variants = [None, 1.0, 2.0, 4.0, 8.0]
paths = sys.argv[1:]
pooled = defaultdict(lambda: defaultdict(list))  # variant -> cat -> [speedups]
for path in paths:
    d = json.load(open(path))
    runs = d.get("runs")
    if not runs: continue
    texts = plain_texts(runs)
    if not texts: continue
    row = {}
    for v in variants:
        out = R.replay_run(texts, lambda c, v=v: R.default_planner(c, reply_prior=v), passes="PAPPAP")
        for cat, rs in out.items():
            pooled[v][cat] += [r.speedup for r in rs]
        row[v] = R.speedups(out)
    cats = list(row[None])
    print(path.split('/')[-2], " ".join(f"{c[:8]}:" + "/".join(f"{row[v][c]:.3f}" for v in variants) for c in cats), flush=True)
print("pooled ratio to None (geomean over texts):")
cats = sorted(pooled[None])
for v in variants[1:]:
    line = []
    allr = []
    for c in cats:
        rs = [a / b for a, b in zip(pooled[v][c], pooled[None][c])]
        allr += rs
        line.append(f"{c}:{math.exp(sum(map(math.log, rs))/len(rs)):.4f}(n={len(rs)})")
    print(v, f"overall {math.exp(sum(map(math.log, allr))/len(allr)):.4f} better {sum(r>1.0001 for r in allr)} worse {sum(r<0.9999 for r in allr)}", " ".join(line))
