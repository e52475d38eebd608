"""The drop-in against a copy of LMDeploy's class, operation by operation."""
from __future__ import annotations

import random

import numpy as np
import pytest

import expert_archive as ea
from expert_archive.integrations.lmdeploy import HistoryRouterExperts
from lmdeploy_reference import HistoryRouterExperts as Reference
from lmdeploy_reference import append_with_start_pos

LAYERS, TOPK, EXPERTS = 5, 3, 128


def same(ours, reference) -> None:
    assert len(ours) == len(reference)
    want, got = reference.get_real(), ours.get_real()
    if want is None:
        assert got is None
        return
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def random_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, EXPERTS, size=(n, LAYERS, TOPK), dtype=np.int64)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64, np.uint8])
def test_random_operations_match(seed, dtype):
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    ours, reference = HistoryRouterExperts(dtype=dtype, experts=EXPERTS), Reference(dtype=dtype)
    same(ours, reference)
    clones = []
    for step in range(250):
        op = pick.choice(["decode"] * 6 + ["prefill", "start_pos", "resize", "reserve", "getitem", "clone"])
        if op == "decode":
            rows = random_rows(rng, 1)
            ours.append(rows)
            reference.append(rows)
        elif op == "prefill":
            rows = random_rows(rng, pick.randint(0, 200))
            ours.append(rows.astype(np.int32))
            reference.append(rows.astype(np.int32))
        elif op == "start_pos":
            start = pick.randint(0, len(reference) + 2)
            rows = random_rows(rng, pick.randint(0, 100))
            if start > len(reference):
                with pytest.raises(ValueError):
                    append_with_start_pos(reference, rows, start)
                with pytest.raises(ea.GapError):
                    ours.append(rows, start_pos=start)
            else:
                append_with_start_pos(reference, rows, start)
                ours.append(rows, start_pos=start)
        elif op == "resize" and len(reference):
            size = pick.randint(0, len(reference))
            ours.resize(size)
            reference.resize(size)
        elif op == "reserve":
            size = pick.randint(0, 1000)
            ours.reserve(size)
            reference.reserve(size)
        elif op == "getitem" and len(reference):
            a = pick.randint(0, len(reference))
            b = pick.randint(a, len(reference) + 3)
            np.testing.assert_array_equal(ours[a:b], reference[a:b])
            np.testing.assert_array_equal(ours[a - 1], reference[a - 1])
            np.testing.assert_array_equal(ours[:, 1], reference[:, 1])
            np.testing.assert_array_equal(ours[a:b:2], reference[a:b:2])
        elif op == "clone":
            clones.append((ours.clone(), reference.clone()))
        same(ours, reference)
    for our_clone, reference_clone in clones:  # clones are independent of their source
        same(our_clone, reference_clone)
        our_clone.append(random_rows(rng, 3))
    same(ours, reference)


def test_construction_and_empty_behaviour():
    ours, reference = HistoryRouterExperts(), Reference()
    assert ours.get_real() is None and reference.get_real() is None and len(ours) == 0
    ours.resize(0)
    reference.resize(0)
    ours.reserve(100)
    with pytest.raises(AssertionError):
        ours.resize(1)
    with pytest.raises(AttributeError):  # get_real() is None before any append
        ours[0:1]
    with pytest.raises(AttributeError):
        reference[0:1]
    rows = np.arange(4 * LAYERS * TOPK).reshape(4, LAYERS, TOPK) % EXPERTS
    ours, reference = HistoryRouterExperts(rows, dtype=np.int32), Reference(rows, dtype=np.int32)
    same(ours, reference)
    assert ours.copy().get_real().dtype == np.int32
    empty = HistoryRouterExperts(np.zeros((0, LAYERS, TOPK), np.int64))
    same(empty, Reference(np.zeros((0, LAYERS, TOPK), np.int64)))


def test_clone_is_independent_of_its_source():
    ours = HistoryRouterExperts(experts=EXPERTS)
    ours.append(np.ones((10, LAYERS, TOPK), np.int64))
    clone = ours.clone()
    ours.resize(2)
    ours.append(np.full((5, LAYERS, TOPK), 7))
    assert len(clone) == 10 and (clone.get_real() == 1).all()
    clone.append(np.full((1, LAYERS, TOPK), 3))
    assert len(ours) == 7 and ours.get_real()[-1, 0, 0] == 7


def test_a_path_survives_and_resumes(tmp_path):
    path = tmp_path / "seq-17.moe"
    first = HistoryRouterExperts(experts=EXPERTS, path=path)
    rows = np.arange(6 * LAYERS * TOPK).reshape(6, LAYERS, TOPK) % EXPERTS
    first.append(rows)
    first.close()
    del first
    resumed = HistoryRouterExperts(experts=EXPERTS, path=path)
    assert len(resumed) == 6
    resumed.append(rows, start_pos=0)  # a re-prefill after the restart: nothing new
    resumed.append(rows[:2], start_pos=6)
    np.testing.assert_array_equal(resumed.get_real(), np.concatenate([rows, rows[:2]]))


def test_ids_outside_the_range_are_refused():
    ours = HistoryRouterExperts(experts=EXPERTS)
    ours.append(np.zeros((2, LAYERS, TOPK), np.int64))
    with pytest.raises(ea.SchemaError):
        ours.append(np.full((1, LAYERS, TOPK), EXPERTS))
    assert len(ours) == 2


def test_temporary_archive_is_removed_with_its_object():
    import gc
    import os

    ours = HistoryRouterExperts(np.zeros((3, LAYERS, TOPK), np.int64))
    path = ours._writer.path
    assert os.path.exists(path)
    del ours
    gc.collect()
    assert not os.path.exists(path)


def fake_lmdeploy_messages():
    """A module shaped as lmdeploy.pytorch.messages where it matters: SchedulerSequence, a
    dataclass whose all_routed_experts default factory is the class itself."""
    import types
    from dataclasses import dataclass, field

    module = types.ModuleType("lmdeploy.pytorch.messages")
    module.HistoryRouterExperts = Reference

    @dataclass
    class SchedulerSequence:
        seq_id: int
        all_routed_experts: Reference = field(default_factory=Reference)

        def __post_init__(self):
            self._num_history_ids = 0

        def append_routed_experts(self, routed_experts):
            self.all_routed_experts.append(routed_experts)

    module.SchedulerSequence = SchedulerSequence
    return module


def test_assigning_the_class_alone_does_not_reach_sequences():
    messages = fake_lmdeploy_messages()
    messages.HistoryRouterExperts = HistoryRouterExperts
    assert type(messages.SchedulerSequence(1).all_routed_experts) is Reference


def test_install_makes_every_new_sequence_use_the_archive():
    from expert_archive.integrations.lmdeploy import install

    messages = fake_lmdeploy_messages()
    install(experts=EXPERTS, messages=messages)
    install(experts=EXPERTS, messages=messages)  # a second call changes nothing
    assert messages.HistoryRouterExperts is HistoryRouterExperts
    seq = messages.SchedulerSequence(7)
    assert type(seq.all_routed_experts) is HistoryRouterExperts and seq._num_history_ids == 0
    assert seq.all_routed_experts.experts == EXPERTS
    rows = np.arange(2 * LAYERS * TOPK).reshape(2, LAYERS, TOPK) % EXPERTS
    seq.append_routed_experts(rows)
    np.testing.assert_array_equal(seq.all_routed_experts.get_real(), rows)
    given = Reference(rows, dtype=np.int32)  # a store handed to the constructor is converted with its rows
    converted = messages.SchedulerSequence(8, all_routed_experts=given).all_routed_experts
    assert type(converted) is HistoryRouterExperts and converted.get_real().dtype == np.int32
    np.testing.assert_array_equal(converted.get_real(), rows)


def test_install_without_lmdeploy_says_so():
    import importlib.util

    from expert_archive.integrations.lmdeploy import install

    if importlib.util.find_spec("lmdeploy") is not None:
        pytest.skip("lmdeploy is installed: install() would patch it")
    with pytest.raises(ImportError):
        install()


def test_get_real_decodes_each_row_once_and_views_keep_their_rows():
    ours = HistoryRouterExperts(experts=EXPERTS)
    first = np.arange(100 * LAYERS * TOPK).reshape(100, LAYERS, TOPK) % EXPERTS
    ours.append(first)
    view = ours.get_real()
    assert not view.flags.writeable
    with pytest.raises(ValueError):
        view[0, 0, 0] = 1
    for i in range(200):  # grows the decoded buffer several times
        ours.append(first[i % 100:i % 100 + 1])
        assert ours.get_real()[-1].tolist() == first[i % 100].tolist()
    ours.resize(50)
    ours.append(np.zeros((10, LAYERS, TOPK), np.int64))
    np.testing.assert_array_equal(view, first)  # a view from before the resize keeps its rows
    np.testing.assert_array_equal(ours.get_real(), np.concatenate([first[:50], np.zeros((10, LAYERS, TOPK))]))
    assert ours.get_real().dtype == np.uint16
