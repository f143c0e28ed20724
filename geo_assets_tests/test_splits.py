"""Splits: grouped by sequence (or block), a pure function of the group, stable as data grows."""

import numpy as np
import pytest

from geo_assets.model.splits import SPLITS, SplitConfig, assign_splits, group_keys, split_summary


def _rows(n_seq=400, per=6, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"{i:016d}" for i in range(n_seq * per)]
    seqs = [f"seq{i // per:05d}" for i in range(n_seq * per)]
    lat = rng.uniform(50, 58, n_seq * per)
    lon = rng.uniform(-6, 1, n_seq * per)
    return ids, seqs, lat, lon


def test_no_sequence_spans_two_splits_and_fractions_hold():
    ids, seqs, lat, lon = _rows()
    s = assign_splits(ids, seqs, lat, lon)
    by_seq = {}
    for q, sp in zip(seqs, s):
        by_seq.setdefault(q, set()).add(sp)
    assert all(len(v) == 1 for v in by_seq.values())
    counts = split_summary(s, seqs)
    assert set(SPLITS) <= set(counts)
    assert 0.10 < counts["test"] / len(ids) < 0.20 and 0.10 < counts["validation"] / len(ids) < 0.20
    assert counts["test_groups"] + counts["validation_groups"] + counts["train_groups"] == 400


def test_adding_images_never_moves_one_and_order_does_not_matter():
    ids, seqs, lat, lon = _rows()
    s = assign_splits(ids, seqs, lat, lon)
    more_ids, more_seqs, more_lat, more_lon = _rows(n_seq=100, seed=1)
    more_ids = [f"new{i}" for i in more_ids]
    grown = assign_splits(ids + more_ids, seqs + more_seqs, np.r_[lat, more_lat], np.r_[lon, more_lon])
    assert np.array_equal(grown[: len(ids)], s)
    rev = assign_splits(ids[::-1], seqs[::-1], lat[::-1], lon[::-1])
    assert np.array_equal(rev[::-1], s)
    # a new image of an existing sequence joins that sequence's split
    k = seqs.index("seq00007")
    late = assign_splits(["late"], ["seq00007"], [0.0], [0.0])
    assert late[0] == s[k]


def test_block_protocol_holds_out_whole_blocks():
    ids, seqs, lat, lon = _rows()
    cfg = SplitConfig(protocol="block", block_deg=1.0)
    s = assign_splits(ids, seqs, lat, lon, cfg)
    blocks = group_keys(ids, seqs, lat, lon, cfg)
    by_block = {}
    for b, sp in zip(blocks, s):
        by_block.setdefault(b, set()).add(sp)
    assert all(len(v) == 1 for v in by_block.values())
    assert {"train", "test"} <= set(s.tolist())


def test_seed_protocol_is_per_image_80_20_without_test():
    ids, seqs, lat, lon = _rows()
    cfg = SplitConfig(protocol="seed_random")
    s = assign_splits(ids, seqs, lat, lon, cfg)
    assert "test" not in set(s.tolist()) and cfg.evaluation_split == "validation"
    assert 0.17 < np.mean(s == "validation") < 0.23
    # per image: the leak the grouped protocol exists to avoid
    spans = sum(len({sp for q, sp in zip(seqs, s) if q == name}) > 1 for name in set(seqs[:600]))
    assert spans > 50


def test_missing_sequence_falls_back_to_the_image_and_bad_settings_are_refused():
    assert group_keys(["a", "b"], ["", None], [0, 0], [0, 0], SplitConfig()) == ["img:a", "img:b"]
    with pytest.raises(ValueError, match="protocol"):
        SplitConfig(protocol="random")
    with pytest.raises(ValueError, match="leave rows"):
        SplitConfig(validation_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="block_deg"):
        SplitConfig(protocol="block", block_deg=0.0)
    with pytest.raises(ValueError, match="1 image ids but 2 sequence ids"):
        assign_splits(["a"], ["s", "t"], [0], [0])
