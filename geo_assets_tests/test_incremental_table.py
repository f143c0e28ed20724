"""The keyed reuse every incremental tile asset goes through: pure Arrow
(`geo_assets.tables.incremental`) and its Parquet side (`geo_assets.defs.incremental`)."""

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from geo_assets.defs.incremental import data_version_of_columns, read_previous, stamp_of, update_table
from geo_assets.defs.metadata import data_version_of
from geo_assets.tables.incremental import counts_of, lookup, match_rows, reuse_rows

SCHEMA = pa.schema([("image_id", pa.string()), ("sha", pa.string()), ("engine", pa.string()),
                    ("vec", pa.list_(pa.float32(), 4)), ("text", pa.string())])
KEY = ["image_id", "sha", "engine"]


def _rows(ids, sha="s", engine="e:1", text="old"):
    return pa.Table.from_pylist([{"image_id": i, "sha": sha, "engine": engine, "vec": [float(n)] * 4, "text": f"{text}-{i}"}
                                 for n, i in enumerate(ids)], schema=SCHEMA)


class Recorder:
    """A compute function that records what it was asked for."""

    def __init__(self):
        self.calls = []

    def __call__(self, missing: pa.Table):
        self.calls.append(missing["image_id"].to_pylist())
        return [{"image_id": r["image_id"], "sha": r["sha"], "engine": r["engine"], "vec": [9.0] * 4, "text": "new"}
                for r in missing.select(KEY).to_pylist()]


def test_matching_rows_are_kept_and_only_the_rest_computed_in_wanted_order():
    old = _rows(["a", "b", "c"])
    wanted = pa.table({"image_id": ["c", "x", "a", "b"], "sha": ["s", "s", "s", "changed"], "engine": ["e:1"] * 4,
                       "path": ["pc", "px", "pa", "pb"]})
    compute = Recorder()
    r = reuse_rows(old, wanted, KEY, SCHEMA, compute)
    assert compute.calls == [["x", "b"]]
    assert r.table.schema == SCHEMA
    assert r.table["image_id"].to_pylist() == ["c", "x", "a", "b"]
    assert r.table["text"].to_pylist() == ["old-c", "new", "old-a", "new"]
    assert r.reused_mask.tolist() == [True, False, True, False]
    assert r.computed["image_id"].to_pylist() == ["x", "b"]
    assert (r.rows_computed, r.rows_reused) == (2, 2)
    counts = r.counts()
    assert counts["rows_computed"] == 2 and counts["rows_reused"] == 2 and counts["seconds_per_row"] >= 0


def test_nothing_missing_calls_no_compute():
    old = _rows(["a", "b"])

    def boom(missing):
        raise AssertionError("compute called with nothing missing")

    r = reuse_rows(old, old.select(KEY), KEY, SCHEMA, boom)
    assert r.table.equals(old) and counts_of([r]) == {"rows_computed": 0, "rows_reused": 2, "seconds_per_row": 0.0}


def test_null_keys_match_and_the_later_duplicate_wins_like_a_dict():
    old = pa.concat_tables([_rows(["a"], text="first"), _rows(["a"], text="second"),
                            _rows(["n"], sha=None, text="null-sha")])
    wanted = pa.table({"image_id": ["a", "n"], "sha": pa.array(["s", None]), "engine": ["e:1", "e:1"]})
    r = reuse_rows(old, wanted, KEY, SCHEMA, Recorder())
    assert r.table["text"].to_pylist() == ["second-a", "null-sha-n"] and r.rows_computed == 0
    assert match_rows(wanted, old, KEY).tolist() == [1, 2]


def test_reusable_rejects_rows_which_are_then_computed():
    old = _rows(["a", "b", "c"])
    compute = Recorder()
    seen = []

    def reusable(matched: pa.Table):
        seen.append(matched["image_id"].to_pylist())
        return [i != "b" for i in matched["image_id"].to_pylist()]

    r = reuse_rows(old, old.select(KEY), KEY, SCHEMA, compute, reusable=reusable)
    assert seen == [["a", "b", "c"]] and compute.calls == [["b"]]
    assert r.table["text"].to_pylist() == ["old-a", "new", "old-c"]


def test_bad_input_is_a_clear_error():
    old = _rows(["a"])
    with pytest.raises(ValueError, match="no columns"):
        reuse_rows(old, pa.table({"image_id": ["a"]}), KEY, SCHEMA, Recorder())
    with pytest.raises(ValueError, match="not in the table's schema"):
        reuse_rows(old, old.append_column("path", pa.array(["p"])), KEY + ["path"], SCHEMA, Recorder())
    with pytest.raises(ValueError, match="compute returned 0 rows for 1 missing"):
        reuse_rows(old, _rows(["z"]).select(KEY), KEY, SCHEMA, lambda missing: [])
    with pytest.raises(ValueError, match="at least one column|same number"):
        match_rows(old, old, [])


def test_lookup_appends_columns_of_the_last_equal_row_in_left_order():
    right = pa.table({"id": ["a", "b", "a"], "n": [1, 2, 3]})
    left = pa.table({"image_id": ["b", "z", "a"]})
    out = lookup(left, right, ["image_id"], {"n": "count"}, right_key=["id"])
    assert out.column_names == ["image_id", "count"] and out["count"].to_pylist() == [2, None, 3]


def test_a_million_rows_reused_byte_equal_in_seconds():
    n = 1_000_000
    rng = np.random.default_rng(0)
    vec = rng.random(n * 4, dtype=np.float32)
    vec[::97] = np.nan  # NaN payloads must survive: bytes compared, not values
    numbers = pc.cast(pa.array(np.arange(n)), pa.string())
    old = pa.table([pc.binary_join_element_wise("img", numbers, ""),
                    pc.utf8_lpad(pc.cast(pa.array(np.arange(n) * 7919), pa.string()), width=64, padding="0"),
                    pa.array(["e:1"] * n), pa.FixedSizeListArray.from_arrays(pa.array(vec), 4),
                    pc.binary_join_element_wise("text ", numbers, "")], schema=SCHEMA)
    order = rng.permutation(n)
    wanted = pa.concat_tables([old.select(KEY).take(pa.array(order)),
                               pa.table({"image_id": ["new"], "sha": ["s"], "engine": ["e:1"]})])
    compute = Recorder()
    started = time.perf_counter()
    r = reuse_rows(old, wanted, KEY, SCHEMA, compute)
    seconds = time.perf_counter() - started
    assert compute.calls == [["new"]] and (r.rows_computed, r.rows_reused) == (1, n)
    kept, expected = r.table.slice(0, n), old.take(pa.array(order))
    for name in ("image_id", "sha", "engine", "text"):
        assert kept[name].equals(expected[name]), name
    got = kept["vec"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    want = expected["vec"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    assert got.tobytes() == want.tobytes()
    assert r.table["text"][n].as_py() == "new"
    # A per-row Python loop takes minutes here; a join and a take take seconds, on a busy machine too.
    assert seconds < 60, seconds


def test_update_table_writes_atomically_and_a_stamp_change_recomputes(tmp_path):
    path = tmp_path / "t" / "data.parquet"
    wanted = _rows(["a", "b"]).select(KEY)
    first = update_table(path, SCHEMA, wanted, KEY, Recorder(), stamp="v1")
    assert first.rows_computed == 2 and stamp_of(read_previous(path, SCHEMA)) == "v1"
    assert pq.read_table(path).select(SCHEMA.names).cast(SCHEMA).equals(first.table)
    assert [p.name for p in path.parent.iterdir()] == ["data.parquet"]  # no temp file left

    again = update_table(path, SCHEMA, wanted, KEY, Recorder(), stamp="v1")
    assert (again.rows_computed, again.rows_reused) == (0, 2)
    compute = Recorder()
    bumped = update_table(path, SCHEMA, wanted, KEY, compute, stamp="v2")
    assert bumped.rows_computed == 2 and compute.calls == [["a", "b"]] and stamp_of(read_previous(path, SCHEMA)) == "v2"


def test_update_table_as_a_cache_appends_and_writes_only_new_rows(tmp_path):
    path = tmp_path / "cache.parquet"
    update_table(path, SCHEMA, _rows(["a"]).select(KEY), KEY, Recorder(), keep_old=True)
    r = update_table(path, SCHEMA, _rows(["b"]).select(KEY), KEY, Recorder(), keep_old=True)
    assert r.table["image_id"].to_pylist() == ["b"]
    assert pq.read_table(path)["image_id"].to_pylist() == ["a", "b"]
    before = (path.stat().st_mtime_ns, path.stat().st_ino)
    again = update_table(path, SCHEMA, _rows(["a", "b"]).select(KEY), KEY, Recorder(), keep_old=True)
    assert again.rows_reused == 2 and (path.stat().st_mtime_ns, path.stat().st_ino) == before  # not rewritten


def test_update_table_rebuilds_a_table_of_other_vector_sizes_only_when_asked(tmp_path):
    path = tmp_path / "emb.parquet"
    other = pa.schema([f if f.name != "vec" else pa.field("vec", pa.list_(pa.float32(), 2)) for f in SCHEMA])
    pq.write_table(pa.Table.from_pylist([{"image_id": "a", "sha": "s", "engine": "e:1", "vec": [1.0, 2.0], "text": "t"}],
                                        schema=other), path)
    with pytest.raises(Exception):
        update_table(path, SCHEMA, _rows(["a"]).select(KEY), KEY, Recorder())
    r = update_table(path, SCHEMA, _rows(["a"]).select(KEY), KEY, Recorder(), rebuild_incompatible=True)
    assert r.rows_computed == 1 and pq.read_table(path)["vec"].type == SCHEMA.field("vec").type


def test_data_version_of_columns_equals_the_per_row_strings():
    t = pa.table({"a": ["x", "y"], "lat": [51.5, None], "ok": [True, False]})
    assert data_version_of_columns(t, ["a", "lat", "ok"]) == data_version_of(["x:51.5:True", "y:None:False"])
