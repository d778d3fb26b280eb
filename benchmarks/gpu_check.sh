#!/usr/bin/env bash
# One short accelerator check: model/decoding tests on the GPU, then both benchmarks with the
# PyTorch side on the same GPU. Logs go to $OUT (or ./gpu_check_logs).
set -uo pipefail
OUT="${OUT:-gpu_check_logs}"; mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
{ nvidia-smi -L; "$PY" -c "import jax, flax, torch, transformers; print(jax.__version__, flax.__version__, torch.__version__, transformers.__version__, jax.devices())"; } 2>&1 | tee "$OUT/env.txt"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -k "not sharded and not mesh" \
  tests/test_layers.py tests/test_network.py tests/test_models.py tests/test_decoding.py \
  tests/test_prefix_trie.py tests/test_hf_parity.py 2>&1 | tail -15 | tee "$OUT/tests.txt"
timeout 120 "$PY" benchmarks/train_throughput.py --part hf --torch_device cuda --warmup 3 --steps 20 2>&1 | tail -12 | tee "$OUT/train_bench.txt"
timeout 120 "$PY" benchmarks/decode_throughput.py --torch_device cuda 2>&1 | tail -12 | tee "$OUT/decode_bench.txt"
