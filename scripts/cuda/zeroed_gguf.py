"""A GGUF's header alone, and back: the same file with every tensor's bytes zero.

    python scripts/cuda/zeroed_gguf.py pack MODEL.gguf OUT.head.gz   # metadata, tokenizer, tensor table
    python scripts/cuda/zeroed_gguf.py unpack OUT.head.gz MODEL.gguf  # a sparse file of the original size

The verify curve (what n rows cost) depends on the tensors' shapes and types,
not on their values: no kernel llama.cpp runs for these types branches on the
data. So a file's curve can be measured on a machine its weights cannot reach
(a device with a 64 MiB upload limit takes the 1.1 GB target as a 1.7 MB
header). SmolLM2's real and zeroed files gave the same curve within 5% at
2..64 rows on an H200 (docs/h200-cuda/). What such a file
cannot measure is anything that depends on the text: acceptance, speedup.
"""

import gzip
import os
import struct
import sys

import gguf


def pack(model: str, out: str) -> None:
    header = gguf.GGUFReader(model).data_offset
    with open(model, "rb") as f, gzip.open(out, "wb") as g:
        g.write(struct.pack("<Q", os.path.getsize(model)))
        g.write(f.read(header))


def unpack(head: str, model: str) -> None:
    with gzip.open(head, "rb") as g, open(model, "wb") as f:
        (size,) = struct.unpack("<Q", g.read(8))
        f.write(g.read())
        f.truncate(size)  # the tensor data: zeros, which take no disk


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit(__doc__.strip().splitlines()[2].strip() + "\n" + __doc__.strip().splitlines()[3].strip())
    (pack if sys.argv[1] == "pack" else unpack)(sys.argv[2], sys.argv[3])
