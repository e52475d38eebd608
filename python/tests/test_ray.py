"""Routing through Ray's object store: rollout actors hand their sessions' archives to trainer
tasks, which decode only their share; a killed actor's synced rows are recovered from its file.
The actors and tasks are in ray_rollout.py (the example); this test runs them on a local cluster."""
from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

import expert_archive as ea

ray = pytest.importorskip("ray", reason="Ray is not installed (scripts/test-bindings installs the pinned version)")
import ray_rollout as example  # noqa: E402  (needs ray)

# A safety net only: nothing here waits for time to pass, but a hung cluster must not hang CI.
TIMEOUT = 300


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # Workers import ray_rollout and expert_archive as the driver does.
    tests = str(Path(__file__).resolve().parent)
    path = os.pathsep.join(p for p in [tests, os.environ.get("PYTHONPATH", "")] if p)
    env = {"PYTHONPATH": path}
    if "EXPERT_ARCHIVE_LIBRARY" in os.environ:
        env["EXPERT_ARCHIVE_LIBRARY"] = os.environ["EXPERT_ARCHIVE_LIBRARY"]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env},
             _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield
    ray.shutdown()


def test_rollouts_to_trainer_ranks_bit_for_bit(cluster, tmp_path):
    seeds = [[11, 12, 13, 14], [21, 22, 23, 24]]
    actors = [example.RolloutActor.remote(str(tmp_path / f"actor{index}")) for index in range(len(seeds))]
    refs = [ref for refs in ray.get([a.rollout.remote(s) for a, s in zip(actors, seeds)], timeout=TIMEOUT)
            for ref in refs]
    expected = [example.expected_rows(seed) for group in seeds for seed in group]

    # 2 context-parallel ranks x 2 pipeline stages; padded and packed batches.
    jobs = [(cp, stage, packed) for cp in range(2) for stage, packed in [((0, 20), False), ((20, 48), True)]]
    results = ray.get([example.train_rank.remote(cp, 2, stage, packed, refs) for cp, stage, packed in jobs],
                      timeout=TIMEOUT)
    for (cp, (low, high), packed), result in zip(jobs, results):
        assert all(result["in_memory"])
        # ray.get mapped the archives' bytes in place: the readers read the object store's memory.
        for place in result["places"]:
            assert "plasma" in place, place
        for index, rows in enumerate(expected):
            start, stop = result["starts"][index], result["stops"][index]
            assert (start, stop) == (len(rows) * cp // 2, len(rows) * (cp + 1) // 2)
            if packed:
                array, cu_seqlens = result["batch"]
                got = array[cu_seqlens[index]:cu_seqlens[index + 1]]
            else:
                got = result["batch"][index, :stop - start]
                assert (result["batch"][index, stop - start:] == -1).all()
            assert got.dtype == np.int32
            np.testing.assert_array_equal(got, rows[start:stop, low:high])
        assert [m["seed"] for m in result["metadata"]] == [str(s) for group in seeds for s in group]

    # The driver reads them too, and the bytes are the archive files' (nothing re-encoded).
    for ref, group_seed, rows in zip(refs, [s for group in seeds for s in group], expected):
        reader = ray.get(ref, timeout=TIMEOUT)
        np.testing.assert_array_equal(reader.read(dtype=np.int32), rows)
        actor_dir = tmp_path / f"actor{0 if group_seed < 20 else 1}"
        file_bytes = (actor_dir / f"session-{group_seed}.moe").read_bytes()
        assert bytes(reader.archive_bytes()) == file_bytes
        assert len(file_bytes) * 4 < rows.nbytes, "the archive is the smaller thing to ship"
    for actor in actors:
        ray.kill(actor)


def test_killed_actor_keeps_its_synced_rows(cluster, tmp_path):
    progress = example.Progress.remote()
    actor = example.RolloutActor.remote(str(tmp_path))
    pid = ray.get(actor.pid.remote(), timeout=TIMEOUT)
    actor.record_until_killed.remote(31, progress)
    synced = ray.get(progress.wait_report.remote(), timeout=TIMEOUT)
    assert synced == len(example.expected_rows(31))
    ray.kill(actor)  # in the middle of its appends
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(actor.pid.remote(), timeout=TIMEOUT)

    path = tmp_path / "session-31.moe"
    reader = ea.Reader(path)
    assert len(reader) >= synced
    # The synced rows are there; the flushed ones after them are whole rows of the session.
    expected = np.concatenate([example.expected_rows(31),
                               example.session_rows(31, synced, len(reader), 0)])
    np.testing.assert_array_equal(reader.read(dtype=np.int32), expected)
    assert reader.verify() == []

    # Once the process is gone its lock is released: the session resumes where the file ends.
    deadline = time.monotonic() + TIMEOUT
    while not _has_exited(pid):
        assert time.monotonic() < deadline, f"the killed actor's process {pid} is still running"
        time.sleep(0.05)
    with ea.Writer.open(path) as writer:
        assert len(writer) >= len(reader)
        writer.append(example.session_rows(31, len(writer), len(writer) + 5, 0))


def _has_exited(pid: int) -> bool:
    """Whether every thread of process `pid` has exited, and so closed its files (releasing its
    locks): the process is gone, or it is a zombie whose leader is its last thread listed (a
    leader becomes a zombie while its other threads may still be exiting, holding the files)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                return False
        return os.listdir(f"/proc/{pid}/task") == [str(pid)]
    except OSError:
        return True


def test_pickle_ships_the_archive_bytes_out_of_band(tmp_path):
    path = tmp_path / "s.moe"
    rows = example.expected_rows(5)
    with ea.Writer.create(path, layers=example.LAYERS, topk=example.TOPK, experts=example.EXPERTS) as writer:
        example.record(writer, 5)
        # A writer is not pickled (it holds the lock); its rows travel as a reader.
        with pytest.raises(TypeError, match="to_reader"):
            pickle.dumps(writer)
        live = writer.to_reader()
        assert len(live) == len(rows)
        writer.sync()
        # Rows appended after the reader's last refresh are not shipped: it ships what it sees.
        writer.append(example.session_rows(5, len(writer), len(writer) + 100, 0))
        writer.sync()
        early = pickle.loads(pickle.dumps(live, protocol=5))
        assert len(early) == len(rows) and early.verify() == []
        np.testing.assert_array_equal(early.read(dtype=np.int32), rows)
    assert live.refresh() == len(rows) + 100
    rows = np.concatenate([rows, example.session_rows(5, len(rows), len(rows) + 100, 0)])
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(live, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 1 and len(data) < 200
    assert bytes(buffers[0].raw()) == path.read_bytes()
    back = pickle.loads(data, buffers=buffers)
    assert back.in_memory and back.path == str(path) and back.verify() == []
    np.testing.assert_array_equal(back.read(dtype=np.int32), rows)
    # In band (protocol 4, or 5 without a callback) the bytes are in the pickle.
    for protocol in (4, 5):
        again = pickle.loads(pickle.dumps(back, protocol=protocol))
        np.testing.assert_array_equal(again[:], rows)
