"""Rollout actors and trainer tasks on Ray, with the archive as what travels (the example test_ray.py runs).

A rollout actor records each session as an inference engine does (chunked prefill, one row per
decode step, an eviction followed by a re-prefill from position 0, a rollback of rejected tokens)
into an archive on its own disk, and returns the finished sessions as Readers put in Ray's object
store: what is stored there is the archive's compressed bytes. A trainer task gets the Readers
(ray.get maps the bytes in place, nothing is copied into its heap) and decodes only its share:
its context-parallel token range of every session and its pipeline stage's layers.

The sessions are scripted from a seed (`engine_ops`), so that the driver can replay the same
script on a plain model of the append rules (`expected_rows`) and compare bit for bit.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np
import ray

import expert_archive as ea

LAYERS, TOPK, EXPERTS = 48, 8, 128  # Qwen3-30B-A3B


def session_rows(seed: int, start: int, stop: int, variant: int) -> np.ndarray:
    """Rows of positions start..<stop of session `seed` as the engine computed them the
    `variant`-th time (a re-prefill computes some rows anew: variant 1 differs from 0 on every
    fifth position; a rollback's new tokens are variant 2)."""
    positions = np.arange(start, stop, dtype=np.int64)[:, None, None]
    layer = np.arange(LAYERS, dtype=np.int64)[None, :, None]
    slot = np.arange(TOPK, dtype=np.int64)[None, None, :]
    # Runs of 3 tokens with the same experts, as routing has; each layer and slot its own pick.
    base = (positions // 3 * 7919 + layer * 104729 + slot * 31 + seed * 15485863) % EXPERTS
    shift = np.where(positions % 5 == 0, variant, 0) if variant == 1 else variant
    return ((base + shift * 17) % EXPERTS).astype(np.int32)


def engine_ops(seed: int) -> list[tuple[Any, ...]]:
    """One session's operations, as an engine issues them: ("append", start, stop, variant) of
    rows start..<stop, ("truncate", rows), ("flush",)."""
    rng = np.random.default_rng(seed)
    prompt, chunk = int(rng.integers(150, 400)), 128
    ops: list[tuple[Any, ...]] = [("append", start, min(prompt, start + chunk), 0) for start in range(0, prompt, chunk)]
    length, decode = prompt, int(rng.integers(120, 260))
    evict_at, rollback_at = int(rng.integers(10, decode // 2)), int(rng.integers(decode // 2, decode - 10))
    variant = 0
    for step in range(decode):
        ops.append(("append", length, length + 1, variant))
        length += 1
        if step % 16 == 15:
            ops.append(("flush",))
        if step == evict_at:
            # Evicted, then re-prefilled from 0 with the next token: the stored rows are kept,
            # only the new token's row is appended.
            ops.append(("append", 0, length + 1, 1))
            length += 1
        if step == rollback_at:
            # Speculative tokens rejected: the last 4 rows are discarded and decoded anew.
            length -= 4
            ops.append(("truncate", length))
            variant = 2
    return ops


def expected_rows(seed: int) -> np.ndarray:
    """The rows session `seed` must hold: its script replayed on a model of the append rules."""
    stored = np.zeros((0, LAYERS, TOPK), dtype=np.int32)
    for op in engine_ops(seed):
        if op[0] == "append":
            _, start, stop, variant = op
            assert start <= len(stored), "the script never leaves a gap"
            if stop > len(stored):
                stored = np.concatenate([stored, session_rows(seed, len(stored), stop, variant)])
        elif op[0] == "truncate":
            stored = stored[:op[1]]
    return stored


def record(writer: ea.Writer, seed: int) -> None:
    for op in engine_ops(seed):
        if op[0] == "append":
            _, start, stop, variant = op
            writer.append(session_rows(seed, start, stop, variant), start=start)
        elif op[0] == "truncate":
            writer.truncate(op[1])
        else:
            writer.flush()


@ray.remote(num_cpus=0)
class RolloutActor:
    """An inference engine's host side: one archive per session on its own disk."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def pid(self) -> int:
        return os.getpid()

    def rollout(self, seeds: list[int]) -> list[ray.ObjectRef]:
        """Records the sessions and returns them, finished, through the object store."""
        refs = []
        for seed in seeds:
            path = self.directory / f"session-{seed}.moe"
            with ea.Writer.create(path, layers=LAYERS, topk=TOPK, experts=EXPERTS,
                                  metadata={"model": "Qwen3-30B-A3B", "seed": str(seed)}) as writer:
                record(writer, seed)
            # What is stored is the archive's bytes (pickle protocol 5, out of band).
            refs.append(ray.put(ea.Reader(path)))
        return refs

    def record_until_killed(self, seed: int, progress: Any) -> None:
        """Records session `seed`, syncs, tells `progress` how many rows are durable, then goes on
        appending (flushed, not synced) until it is killed."""
        path = self.directory / f"session-{seed}.moe"
        with ea.Writer.create(path, layers=LAYERS, topk=TOPK, experts=EXPERTS) as writer:
            record(writer, seed)
            writer.sync()
            ray.get(progress.report.remote(len(writer)))
            for _ in range(100_000):
                writer.append(session_rows(seed, len(writer), len(writer) + 1, 0))
                if len(writer) % 64 == 0:
                    writer.flush()
            ray.get(progress.block.remote())


@ray.remote(num_cpus=0)
class Progress:
    """What a rollout actor says it has done: the driver waits on it instead of on time."""

    def __init__(self) -> None:
        self.synced = -1
        self.reported = asyncio.Event()

    async def report(self, rows: int) -> None:
        self.synced = rows
        self.reported.set()

    async def wait_report(self) -> int:
        await self.reported.wait()
        return self.synced

    async def block(self) -> None:
        await asyncio.Event().wait()


def mapping_of(address: int) -> str:
    """The line of /proc/self/maps holding `address` (the object store is a shared mapping)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            low, high = (int(text, 16) for text in line.split()[0].split("-"))
            if low <= address < high:
                return line.strip()
    return ""


@ray.remote
def train_rank(cp_rank: int, cp_size: int, stage_layers: tuple[int, int], packed: bool,
               sessions: list[ray.ObjectRef]) -> dict[str, Any]:
    """A trainer rank: its token range of every session (context parallel) and its stage's
    layers, as one batch."""
    readers = ray.get(sessions)
    lengths = [len(reader) for reader in readers]
    starts = [length * cp_rank // cp_size for length in lengths]
    stops = [length * (cp_rank + 1) // cp_size for length in lengths]
    layers = slice(*stage_layers)
    batch = ea.read_batch(readers, starts=starts, stops=stops, layers=layers, packed=packed)
    places = [mapping_of(np.frombuffer(reader.archive_bytes(), np.uint8).ctypes.data) for reader in readers]
    return {"batch": batch, "starts": starts, "stops": stops, "in_memory": [r.in_memory for r in readers],
            "places": places, "metadata": [r.metadata for r in readers]}

