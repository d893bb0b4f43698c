"""Replay the planner once per text ("A") or the bench's old way ("PAPPAP") on
recorded runs, writing each text's speedup to /tmp/gap/out-PASSES.json: run it
once with one-token-matches.diff applied and once without, and divide per text
(one-token-matches.txt).

    python docs/planner-replay/one-token-matches-replay.py A RESULTS.json ...
"""

import json, sys
from localspec.bench import replay as R
from localspec.bench.texts import plain_texts
ps = sys.argv[1]; out = {}
for path in sys.argv[2:]:
    d = json.load(open(path)); runs = d.get("runs")
    if not runs: continue
    texts = plain_texts(runs)
    if not texts: continue
    for cat, rs in R.replay_run(texts, passes=ps).items():
        for t, r in zip([t for t in texts if t.category == cat], rs):
            out[path + "|" + t.prompt_id] = (cat, r.speedup)
json.dump(out, open(f"/tmp/gap/nmin-{ps}-{sys.argv[0].split('/')[-1]}.json" if False else f"/tmp/gap/out-{ps}.json", "w"))
