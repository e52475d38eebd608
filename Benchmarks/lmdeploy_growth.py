#!/usr/bin/env python3
"""LMDeploy's routed-expert history, measured: a uint16 [tokens, layers, topk] array grown with
np.pad by 64 rows whenever it is full (the whole array is copied each time), one decode row
appended per step. Prints microseconds per appended row, amortised, and the peak array size.

usage: python3 lmdeploy_growth.py [ROWS] [LAYERS] [TOPK]      (default 131072 48 8: Qwen3-30B-A3B)
"""
import sys, time
import numpy as np

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 131072
layers = int(sys.argv[2]) if len(sys.argv) > 2 else 48
topk = int(sys.argv[3]) if len(sys.argv) > 3 else 8
step = np.random.default_rng(1).integers(0, 128, size=(1, layers, topk), dtype=np.uint16)

history = np.zeros((0, layers, topk), dtype=np.uint16)
count = 0
start = time.perf_counter()
for _ in range(rows):
    if count == history.shape[0]:
        history = np.pad(history, ((0, 64), (0, 0), (0, 0)))
    history[count] = step
    count += 1
seconds = time.perf_counter() - start
print(f"lmdeploy np.pad growth ({rows} rows of {layers}x{topk} uint16): {seconds / rows * 1e6:.3f} us per row amortised, "
      f"array {history.nbytes / 2**20:.1f} MiB")
