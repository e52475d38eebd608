"""A writer process and a reader process: the reader always sees a consistent prefix (whole
flushed batches, rows equal to what was written), synchronised only through what the processes
say to each other."""
from __future__ import annotations

import multiprocessing as mp

import numpy as np

import expert_archive as ea
from conftest import rows

BATCHES = [1, 7, 1, 1, 64, 3, 200, 1, 1, 1, 500, 2, 33, 1, 1000, 5]


def boundaries() -> list[int]:
    return list(np.cumsum(BATCHES))


def writer_process(path: str, to_reader, from_reader) -> None:
    # Blocks larger than everything written: records end exactly at the flushes.
    with ea.Writer.create(path, layers=6, topk=4, experts=200, block_rows=4096) as w:
        to_reader.send(("created", 0))
        for n in BATCHES:
            w.append(rows(n, first=len(w)))
            w.flush()
            to_reader.send(("flushed", len(w)))
            # Half the batches wait until the reader has looked, half run ahead of it.
            if n % 2 == 1:
                assert from_reader.recv() == "seen"
    to_reader.send(("done", sum(BATCHES)))


def reader_process(path: str, from_writer, to_writer, report) -> None:
    try:
        assert from_writer.recv()[0] == "created"
        r = ea.Reader(path)
        allowed, expected = set([0] + boundaries()), rows(sum(BATCHES))
        seen, last, done = [], 0, None
        while True:
            if from_writer.poll():
                kind, count = from_writer.recv()
                if kind == "done":
                    done = count
                elif count in (b for b, n in zip(boundaries(), BATCHES) if n % 2 == 1):
                    # The writer waits for this answer: it has flushed exactly `count` rows.
                    visible = r.refresh()
                    assert visible == count, f"the writer flushed {count} rows, the reader sees {visible}"
                    assert np.array_equal(r[0:visible], expected[:visible])
                    seen.append(visible)
                    to_writer.send("seen")
            visible = r.refresh()
            assert visible in allowed, f"{visible} rows is not a flushed prefix"
            assert visible >= last, f"rows went from {last} to {visible}"
            got = r[0:visible]
            assert np.array_equal(got, expected[:visible]), f"rows 0..<{visible} differ from what was written"
            seen.append(visible)
            last = visible
            if done is not None and visible == done:
                break
        report.put(("ok", sorted(set(seen))))
    except BaseException as error:  # the parent reports it
        report.put(("failed", repr(error)))


def test_reader_process_sees_consistent_prefixes(tmp_path):
    context = mp.get_context("spawn")
    path = str(tmp_path / "shared.moe")
    writer_end, reader_end = context.Pipe()
    report = context.Queue()
    reader = context.Process(target=reader_process, args=(path, reader_end, reader_end, report))
    writer = context.Process(target=writer_process, args=(path, writer_end, writer_end))
    reader.start()
    writer.start()
    outcome = report.get(timeout=300)
    writer.join(timeout=300)
    reader.join(timeout=300)
    assert outcome[0] == "ok", outcome[1]
    assert writer.exitcode == 0 and reader.exitcode == 0
    synchronised = {b for b, n in zip(boundaries(), BATCHES) if n % 2 == 1}
    assert synchronised <= set(outcome[1])
    np.testing.assert_array_equal(ea.Reader(path)[:], rows(sum(BATCHES)))
