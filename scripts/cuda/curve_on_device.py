"""The verify curve of GGUF files through localspec's own measurement, on a GPU.

    python scripts/cuda/curve_on_device.py A.gguf,B.gguf 1,2,4,8,16 OUT.json "GPU words"

What `localspec curve --ngl 99 --json` prints, with llama_cpp imported before
numpy: on the H200 image (Python 3.12, numpy 2.5.2) any localspec command
segfaulted inside llama_model_load_from_file when numpy came first, and a
script that imported llama_cpp first ran; the cause was not found there.
"""

import llama_cpp  # noqa: F401  (first: see above)

import json
import sys

from localspec.commands import curve
from localspec.host import cpu_name

N_GPU_LAYERS = 99  # every layer of these models
THREADS = 4  # every layer is on the GPU; threads only feed it
REPEATS = 5

paths = sys.argv[1].split(",")
rows = tuple(int(x) for x in sys.argv[2].split(","))
curves = curve.measure_files(paths, rows, REPEATS, THREADS, N_GPU_LAYERS)
print("\n".join(curve.table([p.rsplit("/", 1)[-1] for p in paths], curves)))
with open(sys.argv[3], "w") as f:
    json.dump({"cpu": cpu_name(), "gpu": sys.argv[4], "threads": THREADS, "n_gpu_layers": N_GPU_LAYERS,
               "repeats": REPEATS, "models": [{"path": p, "seconds": {str(n): s for n, s in c.items()}}
                                              for p, c in zip(paths, curves)]}, f, indent=1)
