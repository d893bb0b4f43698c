"""The planner as it is, replayed three ways on the recorded runs: each text
once (A), twice with the faster counting (AA), and as the bench meets it
(PAPPAP: plain, auto, plain-rerun, twice; the fastest auto pass counts).
Printed: pooled ratios to A. Output: passes.txt.

    python docs/planner-replay/passes-weigh.py $(ls docs/*/results.json | grep -v "llama-server\\|layouts\\|rpc\\|agent")
"""

import json, sys, math
from collections import defaultdict
from localspec.bench import replay as R
from localspec.bench.texts import plain_texts
pooled = defaultdict(lambda: defaultdict(list))
for path in sys.argv[1:]:
    d = json.load(open(path)); runs = d.get("runs")
    if not runs: continue
    texts = plain_texts(runs)
    if not texts: continue
    for ps in ("A", "AA", "PAPPAP"):
        for cat, rs in R.replay_run(texts, passes=ps).items():
            pooled[ps][cat] += [r.speedup for r in rs]
g = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs))
for ps in ("AA", "PAPPAP"):
    allr = []
    line = []
    for c in ("code-edit", "code-generation", "rag", "summarization", "extraction"):
        rs = [a / b for a, b in zip(pooled[ps][c], pooled["A"][c])]; allr += rs
        line.append(f"{c} {g(rs):.4f}")
    allr = [a / b for c in pooled["A"] for a, b in zip(pooled[ps][c], pooled["A"][c])]
    print(ps, "vs A: overall", f"{g(allr):.4f}", " ".join(line))
