"""Weigh a slow start for short lookup drafts (slow-start-floor.diff applied
to localspec/controller.py: the planner's cap of twice the copy so far plus
one applies from `slow_start_floor` tokens up, not from K_MAX = 8) against
the planner as it is (8), in replay, as the bench meets each text (PAPPAP).
Output: slow-start-floor.txt.

    python docs/planner-replay/slow-start-floor-weigh.py $(ls docs/*/results.json | grep -v "llama-server\|layouts\|rpc\|agent")
"""

import json, sys, math
from collections import defaultdict
from localspec.bench import replay as R
from localspec.bench.texts import plain_texts
variants = [8, 1, 2, 3, 4, 6]
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
        out = R.replay_run(texts, lambda c, v=v: R.default_planner(c, slow_start_floor=v), passes="PAPPAP")
        for cat, rs in out.items():
            pooled[v][cat] += [r.speedup for r in rs]
        row[v] = R.speedups(out)
    cats = list(row[8])
    print(path.split('/')[-2], " ".join(f"{c[:8]}:" + "/".join(f"{row[v][c]:.3f}" for v in variants) for c in cats), flush=True)
print("pooled ratio to floor 8 (geomean over texts):")
cats = sorted(pooled[8])
for v in variants[1:]:
    line = []
    allr = []
    for c in cats:
        rs = [a / b for a, b in zip(pooled[v][c], pooled[8][c])]
        allr += rs
        line.append(f"{c}:{math.exp(sum(map(math.log, rs))/len(rs)):.4f}(n={len(rs)})")
    print(v, f"overall {math.exp(sum(map(math.log, allr))/len(allr)):.4f} better {sum(r>1.0001 for r in allr)} worse {sum(r<0.9999 for r in allr)}", " ".join(line))
