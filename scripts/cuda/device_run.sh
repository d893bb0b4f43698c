#!/bin/bash
# What ran on the lent NVIDIA H200 (2026-12-04), in two stages because one
# upload holds at most 64 MiB. Prepared here (see docs/h200-cuda/README.md):
#   .dev/llama-src.tgz   the vendored llama.cpp of llama-cpp-python 0.3.36 (backends other than CPU/CUDA left out)
#   .dev/llama_cpp/      llama-cpp-python's Python files (no libraries)
#   .dev/whl/            gguf, platformdirs, diskcache wheels (not in the device image)
#   .dev/q15.head.gz, .dev/q05.head.gz   zeroed_gguf.py pack of the default pair
#   .dev/smol.*          SmolLM2-135M split in parts, joined in stage 2
# Stage 1: bash scripts/cuda/device_run.sh build   Stage 2: bash scripts/cuda/device_run.sh smollm2
set -u
FA=${FA:-ON}  # GGML_CUDA_FA: both were run (OFF builds in 164 s, ON in 272 s on 16 cores)
export PYTHONPATH=/root/site:$PWD PYTHONUNBUFFERED=1
localspec() { python3 -c "import llama_cpp, runpy, sys; sys.argv[0] = 'localspec'; runpy.run_module('localspec', run_name='__main__')" "$@"; }
ROWS=1,2,3,4,5,6,7,8,9,12,16,17,24,32,48,64,128
case "$1" in
build)
    mkdir -p /root/w /root/site/llama_cpp/lib && tar xzf .dev/llama-src.tgz -C /root/w
    cmake -S /root/w/llama.cpp -B /root/w/build -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_FA=$FA \
        -DGGML_CUDA_NCCL=OFF -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release || exit 3
    cmake --build /root/w/build -j16 --target llama || exit 4
    python3 -m pip install -q --no-index --no-deps --target /root/site .dev/whl/*.whl
    cp -r .dev/llama_cpp /root/site/ && find /root/w/build -name '*.so*' -exec cp -a {} /root/site/llama_cpp/lib/ \;
    for m in q15 q05; do python3 scripts/cuda/zeroed_gguf.py unpack .dev/$m.head.gz /root/$m.gguf; done
    python3 scripts/cuda/curve_on_device.py /root/q15.gguf,/root/q05.gguf $ROWS $OUT/curve-pair.json "NVIDIA H200 (CUDA 13.0, sm_90, GGML_CUDA_FA=$FA)"
    ;;
smollm2)
    cat /root/keep/smol.* .dev/smol.* > /root/smol.gguf
    python3 scripts/cuda/zeroed_gguf.py pack /root/smol.gguf /root/smol.head.gz
    python3 scripts/cuda/zeroed_gguf.py unpack /root/smol.head.gz /root/smolzero.gguf
    python3 scripts/cuda/curve_on_device.py /root/smol.gguf,/root/smolzero.gguf 1,2,3,4,5,8,9,16,17,32,64 \
        $OUT/curve-smollm2-real-vs-zeroed.json "NVIDIA H200 (CUDA 13.0, sm_90, GGML_CUDA_FA=$FA)"
    localspec bench --target /root/smol.gguf --ngl 99 --modes plain,lookup,auto,plain-rerun --per-category 3 --repeats 2 \
        --categories code-edit,code-generation,rag,summarization,extraction --out /root/bench && tar czf $OUT/bench.tgz -C /root/bench .
    ;;
esac
