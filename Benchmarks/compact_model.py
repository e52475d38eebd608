#!/usr/bin/env python3
"""Ideal code lengths of candidate block models for the compact codec (issue #5).

Usage: compact_model.py TRACE.npy [BLOCK_ROWS ...]
Per block of B rows, columns = (layer, slot). Every static model pays for its frequency table
(estimated as the table format the codec writes: per symbol a presence bit run + Elias-gamma of
the quantized frequency). Ratios are int32 bytes / ideal bytes.
"""
import sys, math
import numpy as np

SCALE = 12

def gamma_bits(x):            # Elias gamma length of x >= 1
    return 2 * np.floor(np.log2(x)) + 1

def quantize(counts, scale=SCALE):
    """Counts -> frequencies summing to 2^scale, every present symbol >= 1 (as the codec does)."""
    total = counts.sum()
    f = np.where(counts > 0, np.maximum(1, np.floor(counts * (1 << scale) / total)), 0).astype(np.int64)
    diff = (1 << scale) - f.sum()
    f[np.argmax(counts)] += diff
    if f[np.argmax(counts)] <= 0:
        raise ValueError
    return f

def static_cost(symbols, alphabet, scale=SCALE, table=True):
    """Bits to code `symbols` with a quantized static table of their own counts, table included."""
    if len(symbols) == 0:
        return 0.0
    counts = np.bincount(symbols, minlength=alphabet)
    present = counts > 0
    if present.sum() == 1:
        return 8 + 16  # a constant: mode + value
    if present.sum() > (1 << scale) // 2:
        return len(symbols) * math.ceil(math.log2(alphabet)) + 8
    f = quantize(counts, scale)
    bits = -(counts[present] * np.log2(f[present] / (1 << scale))).sum()
    if table:
        bits += table_bits(f)
    return bits

def table_bits(f):
    """Symbol runs: gamma(zero-run+1) before every present symbol, gamma(freq) for it."""
    idx = np.nonzero(f)[0]
    gaps = np.diff(np.concatenate([[-1], idx])) # run of zeros + 1
    return float(gamma_bits(gaps).sum() + gamma_bits(f[idx]).sum()) + 8

def adaptive_cost(symbols, alphabet, inc=32, limit=1 << 16):
    """Adaptive frequency count model (start 1 each), no table."""
    counts = np.ones(alphabet)
    total = alphabet
    bits = 0.0
    for s in symbols:
        bits -= math.log2(counts[s] / total)
        counts[s] += inc; total += inc
        if total > limit:
            counts = np.floor((counts + 1) / 2); total = counts.sum()
    return bits

def models(block, E):
    """block: [B, L, K] ints. Returns dict of model -> bits."""
    B, L, K = block.shape
    cols = block.reshape(B, L * K).T.astype(np.int64)   # [C, B]
    C = L * K
    prev_tok = np.concatenate([cols[:, :1] * 0 - 1, cols[:, :-1]], axis=1)
    rep = cols == prev_tok
    out = {}
    # order 0 per column
    out['o0 per column'] = sum(static_cost(cols[c], E) for c in range(C))
    # repeat escape: alphabet E+1, symbol E = same as previous token in this column
    esc = np.where(rep, E, cols)
    out['o0 + repeat escape'] = sum(static_cost(esc[c], E + 1) for c in range(C))
    # slot delta (id - previous slot) mod E, + repeat escape; choose per column best of both
    if K > 1:
        d = cols.copy()
        for c in range(C):
            if c % K:
                d[c] = (cols[c] - cols[c - 1]) % E
        desc = np.where(rep, E, d)
        best = 0.0
        for c in range(C):
            a = static_cost(esc[c], E + 1)
            b = static_cost(desc[c], E + 1) if c % K else a
            best += min(a, b)
        out['o0 + repeat escape, best of id / slot delta'] = best
        # shared table per layer for the slot>0 deltas (cheaper tables in small blocks)
        shared = 0.0
        for l in range(L):
            shared += static_cost(esc[l * K], E + 1)
            shared += static_cost(desc[l * K + 1:(l + 1) * K].ravel(), E + 1)
        out['repeat escape, slot 0 own table, slots>0 deltas one table per layer'] = shared
        # one table for all slot>0 deltas of the block
        allds = desc[[c for c in range(C) if c % K]].ravel()
        out['repeat escape, slot 0 own table, all deltas one table'] = (
            sum(static_cost(esc[l * K], E + 1) for l in range(L)) + static_cost(allds, E + 1))
    # previous layer same slot as context: delta to previous layer
    if L > 1:
        pl = cols.copy()
        for c in range(K, C):
            pl[c] = (cols[c] - cols[c - K]) % E
        pesc = np.where(rep, E, pl)
        out['repeat escape, best of id / prev-layer delta'] = sum(
            min(static_cost(esc[c], E + 1), static_cost(pesc[c], E + 1) if c >= K else 1e18) for c in range(C))
    return out

def models_basic(block, E):
    B, L, K = block.shape
    cols = block.reshape(B, L * K).T.astype(np.int64)
    C = L * K
    prev_tok = np.concatenate([cols[:, :1] * 0 - 1, cols[:, :-1]], axis=1)
    esc = np.where(cols == prev_tok, E, cols)
    total = 0.0
    for c in range(C):
        a = static_cost(esc[c], E + 1)
        if c % K:
            d = np.where(cols[c] == prev_tok[c], E, (cols[c] - cols[c - 1]) % E)
            a = min(a, static_cost(d, E + 1))
        total += a
    return total

def main():
    path = sys.argv[1]
    ids = np.load(path)
    n, L, K = ids.shape
    E = int(ids.max()) + 1
    E = 1 << math.ceil(math.log2(E))
    w = math.ceil(math.log2(E))
    C = L * K
    default = min(65536, max(64, 64 * 1024 * 8 // (C * w))) & ~7
    sizes = [int(a) for a in sys.argv[2:]] or [default, 4 * default, 16384]
    raw = n * C * 4
    print(f"{path}: {n} x {L} x {K}, E={E}, default block {default} rows; int32 {raw} bytes")
    for B in sizes:
        tot = {}
        for s in range(0, n, B):
            for k, v in models(ids[s:s + B], E).items():
                tot[k] = tot.get(k, 0.0) + v
        print(f"-- B = {B} rows")
        for k, v in tot.items():
            print(f"   {raw / (v / 8):6.2f}  {v / (n * C):5.3f} bit/id  {k}")
    # adaptive: one column sample to compare with static (slow in Python, first 20000 rows)
    B = default
    if '--adaptive' in sys.argv:
        pass

if __name__ == '__main__':
    main()
