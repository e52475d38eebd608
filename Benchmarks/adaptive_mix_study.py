#!/usr/bin/env python3
"""Ideal ratio of block-local *adaptive* context models on a routing trace (issue #5 study).

Each block is coded on its own: every count starts empty at the block's first row and is
updated after each id, so a decoder could make the same predictions (no table, no side
information). Code length = sum of -log2 p(id); ratio = int32 bytes / (bits / 8). Columns are
the row's (layer, slot) pairs, layer-major as stored.

Models, each a probability for the id of column c at row t:
  q   order 0 with the repeat escape: P(id == previous token's id) adaptive per column, else
      an adaptive order-0 count of the column's non-repeated ids;
  A   q blended (Witten-Bell) with counts conditioned on the previous token's id;
  C   q blended with counts conditioned on the previous layer's id, then on the previous two
      layers' ids (same token, same slot);
  S   q blended with counts conditioned on the previous slot's id (same token, same layer);
  mix the average of A and C (and S when topk > 1).

usage: adaptive_mix_study.py TRACE.npy [BLOCK_ROWS ...]      (default 3120 12480)
A trace is [tokens, layers] or [tokens, layers, topk] of expert ids. Slow (numpy sorts of
tokens x columns keys); deepseek-v2-lite (14.7M ids) takes a few minutes.
"""
import sys
import numpy as np


def load(path):
    a = np.load(path)
    if a.ndim == 2:
        a = a[:, :, None]
    tokens, layers, topk = a.shape
    experts = int(a.max()) + 1
    return a.reshape(tokens, layers * topk).astype(np.int64), topk, experts


def running_counts(keys):
    """For each entry, how many earlier entries (in row-major order) have the same key."""
    flat = keys.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_keys = flat[order]
    starts = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1]
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(flat)]))
    counts = np.empty(len(flat), np.int64)
    counts[order] = np.arange(len(flat)) - starts[group]
    return counts.reshape(keys.shape).astype(np.float64)


def running_sums(keys, values):
    """For each entry, the sum of `values` over earlier entries with the same key."""
    flat, vals = keys.ravel(), values.ravel().astype(np.float64)
    order = np.argsort(flat, kind="stable")
    sorted_keys = flat[order]
    starts = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1]
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(flat)]))
    sums = np.cumsum(vals[order]) - vals[order]
    sums = sums - sums[starts][group]
    out = np.empty(len(flat))
    out[order] = sums
    return out.reshape(keys.shape)


def study(ids, topk, experts, block_rows):
    tokens, columns = ids.shape
    none = experts          # context value: no such id (block start, layer 0, slot 0)
    contexts = experts + 1
    row = np.arange(tokens)
    block = (row // block_rows)[:, None] * np.ones((1, columns), np.int64)
    column = np.arange(columns)[None, :] * np.ones((tokens, 1), np.int64)

    previous_token = np.empty_like(ids)
    previous_token[1:] = ids[:-1]
    previous_token[row % block_rows == 0] = none
    previous_layer = np.full_like(ids, none)
    previous_layer[:, topk:] = ids[:, :-topk]
    two_layers_back = np.full_like(ids, none)
    two_layers_back[:, 2 * topk:] = ids[:, :-2 * topk]
    previous_slot = np.full_like(ids, none)
    previous_slot[:, 1:] = ids[:, :-1]
    previous_slot[:, ::topk] = none

    def key(context_values):
        k = block * columns + column
        for c in context_values:
            k = k * contexts + c
        return k

    def counts(context_values, symbol, symbols):
        k = key(context_values)
        return running_counts(k * symbols + symbol), running_counts(k)

    alpha = 0.4
    repeat = ids == previous_token
    repeat_count, seen = counts([], repeat.astype(np.int64), 2)
    p_repeat = np.where(previous_token < none, (repeat_count + alpha) / (seen + 2 * alpha), 1.0)
    symbol = np.where(repeat, experts, ids)
    id_count, id_seen = counts([repeat.astype(np.int64)], symbol, experts + 1)
    q = np.where(repeat, p_repeat, p_repeat * (id_count + alpha / 4) / (id_seen + alpha / 4 * experts))

    def blended(chain, base, k=2.0):
        """`base` blended with counts under each context of `chain` in turn (Witten-Bell:
        the weight of the lower model grows with the distinct ids seen in the context)."""
        p = base
        for context_values in chain:
            c, n = counts(context_values, ids, experts)
            first_time = running_counts(key(context_values) * experts + ids) == 0
            distinct = running_sums(key(context_values), first_time)
            weight = k * np.maximum(distinct, 1)
            p = (c + weight * p) / (n + weight)
        return p

    def ratio(p):
        return tokens * columns * 32 / -np.log2(p).sum()

    a = blended([(previous_token,)], q)
    c = blended([(previous_layer,), (previous_layer, two_layers_back)], q)
    figures = {"q (order 0 + repeat)": ratio(q), "A (previous token)": ratio(a),
               "C (previous layers)": ratio(c), "mix A, C": ratio((a + c) / 2)}
    if topk > 1:
        s = blended([(previous_slot,)], q)
        figures["S (previous slot)"] = ratio(s)
        figures["mix A, C, S"] = ratio((a + c + s) / 3)
    return figures


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ids, topk, experts = load(sys.argv[1])
    for block_rows in [int(b) for b in sys.argv[2:]] or [3120, 12480]:
        figures = study(ids, topk, experts, block_rows)
        print(f"{sys.argv[1]}: {block_rows}-row blocks: " +
              ", ".join(f"{name} {value:.2f}" for name, value in figures.items()), flush=True)


if __name__ == "__main__":
    main()
