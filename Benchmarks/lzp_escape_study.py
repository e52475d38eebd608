#!/usr/bin/env python3
"""Ideal ratio of the compact codec's static model with LZP-style escapes (issue #5 study).

Per block and column, each id becomes one symbol of a static (per-block) table:
  REPEAT   the previous token's id at this column;
  HIT(o)   the id this column took, earlier in the block, after the same ids at the o previous
           layers (same token, same slot), checked from order O down to 1, each candidate
           only if no earlier one (nor the repeat) was the same id;
  the id itself otherwise.
Code length = order-0 entropy of each column's symbols plus about 1.5 bytes per used symbol
(the table), ratio = int32 bytes / that. ORDER 0 is the codec's own model (repeat escape only).

usage: lzp_escape_study.py TRACE.npy ORDER [BLOCK_ROWS ...]     (default 3120 12480)
Pure Python per id: about a minute for llama4 (828K ids) per order.
"""
import sys
import numpy as np


def entropy_bits(symbols, alphabet):
    counts = np.bincount(symbols, minlength=alphabet).astype(float)
    used = counts[counts > 0]
    return -(used * np.log2(used / used.sum())).sum(), len(used)


def study(ids, topk, experts, order, block_rows):
    tokens, columns = ids.shape
    repeat = experts
    bits, used_symbols = 0.0, 0
    for start in range(0, tokens, block_rows):
        block = ids[start:start + block_rows]
        rows = len(block)
        for c in range(columns):
            column = block[:, c]
            previous = np.r_[-1, column[:-1]]
            maps = [{} for _ in range(order)]
            symbols = np.empty(rows, np.int64)
            for t in range(rows):
                value = column[t]
                orders = [o for o in range(order, 0, -1) if c - o * topk >= 0]
                contexts = {o: tuple(block[t, c - j * topk] for j in range(1, o + 1)) for o in orders}
                if value == previous[t]:
                    symbols[t] = repeat
                else:
                    symbols[t] = value
                    tried = [previous[t]]
                    for o in orders:
                        guess = maps[o - 1].get(contexts[o], -1)
                        if guess >= 0 and guess not in tried:
                            if guess == value:
                                symbols[t] = repeat + o
                                break
                            tried.append(guess)
                for o in orders:
                    maps[o - 1][contexts[o]] = value
            b, u = entropy_bits(symbols, experts + order + 1)
            bits += b
            used_symbols += u
    return tokens * columns * 4 / (bits / 8 + used_symbols * 1.5)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    a = np.load(sys.argv[1])
    if a.ndim == 2:
        a = a[:, :, None]
    tokens, layers, topk = a.shape
    ids = a.reshape(tokens, layers * topk).astype(np.int64)
    experts, order = int(ids.max()) + 1, int(sys.argv[2])
    for block_rows in [int(b) for b in sys.argv[3:]] or [3120, 12480]:
        print(f"{sys.argv[1]}: order {order}, {block_rows}-row blocks: ratio {study(ids, topk, experts, order, block_rows):.3f}",
              flush=True)


if __name__ == "__main__":
    main()
