"""Trace one prompt's text replayed once per text in run order (the bench's new way): every drafting step with its match length, draft, kept tokens, cost and the bucket's survival estimates.

    python docs/planner-replay/trace-one-text.py docs/epyc-zen4-long-5/results.json spec-bench/133
"""
import json, sys
import numpy as np
from localspec.bench import replay as R
from localspec.bench.texts import plain_texts
from localspec.costs import CostModel
from localspec.ngram import common_prefix_len
d = json.load(open(sys.argv[1])); target = sys.argv[2]
texts = plain_texts(d["runs"])
planner = None
for t in texts:
    costs = CostModel.from_snapshot(t.costs)
    if planner is None: planner = R.default_planner(costs)
    planner.costs = costs
    planner.lookup.quote([])
    if t.prompt_id != target:
        R.replay(planner, t.prompt, t.tokens); continue
    drafter = planner.drafters["lookup"]; context = list(t.prompt); i = 0; n = len(t.tokens); text = t.tokens
    drafter.observe(context, 0); secs = 0
    while i < n:
        plan = planner.plan(context); k = min(plan.k, n - 1 - i)
        draft = drafter.propose(context, k, None, None).tokens[:k] if plan.method == "lookup" and k else []
        acc = common_prefix_len(list(draft), list(text[i:i+len(draft)]))
        secs += costs.verify(len(draft) + 1)
        if draft:
            dr = drafter.propose(context, 63, None, None)
            sv = planner._lookup_acceptance(dr.match_n); e = sv.expected(8)
            print(f"  pos {i:3} match_n {dr.match_n:2} k {k:2} kept {acc:2} cost {costs.verify(len(draft)+1)/costs.verify(1):.2f}  S1..8 " + " ".join(f"{x:.2f}" for x in np.diff(e)))
        context.extend(text[i:i+acc+1]); i += acc + 1; drafter.observe(context, acc)
    print(target, "replayed", round(n * costs.verify(1) / secs, 3))
    break
