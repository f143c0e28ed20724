"""Keyed reuse of a partition's table: keep the old rows whose key is wanted again,
compute only the rest.

Every keyed tile asset works the same way: it lists the rows it wants (the key
columns plus whatever computing a row needs), matches them to its previous table
on those keys, takes the matching rows as they are, and computes the missing
ones. Matching is a DuckDB hash join on the key columns and the reused rows are
taken with Arrow's `Table.take`, so the values are copied as Arrow buffers (no Python
object per row): a million-row partition costs seconds, not minutes (PERFORMANCE.md).

Key semantics are those of a Python dict keyed by the key tuple: null equals
null, and when the old table holds a key twice the later row wins.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa

Compute = Callable[[pa.Table], "pa.Table | list[dict]"]
"""Rows for the missing keys: one per row of its argument (the wanted rows, same order),
with the table's columns; an Arrow table or a list of dicts."""


@dataclass(frozen=True)
class Reuse:
    """The rows wanted, in the order asked for, and what it cost."""

    table: pa.Table
    """One row per wanted row, in wanted order, with the schema's columns."""
    computed: pa.Table
    """The rows computed now, in wanted order (what a cache appends)."""
    reused_mask: np.ndarray
    """Per wanted row: True where the row was taken from the old table."""
    seconds: float
    """Seconds spent computing the missing rows."""

    @property
    def rows_computed(self) -> int:
        return self.computed.num_rows

    @property
    def rows_reused(self) -> int:
        return int(self.reused_mask.sum())

    def counts(self) -> dict:
        return counts_of([self])


def counts_of(results: Sequence[Reuse]) -> dict:
    """`rows_computed`, `rows_reused`, `seconds_per_row` (of the computed rows) over one or
    more results: the same three numbers for every incremental asset."""
    computed = sum(r.rows_computed for r in results)
    seconds = sum(r.seconds for r in results)
    return {"rows_computed": computed, "rows_reused": sum(r.rows_reused for r in results),
            "seconds_per_row": round(seconds / computed, 4) if computed else 0.0}


def _check_columns(table: pa.Table, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise ValueError(f"{what}: no columns {missing} (it has {table.column_names})")


def match_rows(left: pa.Table, right: pa.Table, key: Sequence[str], right_key: Sequence[str] | None = None) -> np.ndarray:
    """For each row of `left`, the index of the last row of `right` with an equal key
    (null equal to null), or -1. A DuckDB hash join on the key columns and row numbers
    only, so any column type can ride along in the tables."""
    import duckdb

    key = list(key)
    right_key = list(right_key or key)
    if not key or len(key) != len(right_key):
        raise ValueError(f"keys {key} and {right_key} must name the same number (>= 1) of columns")
    _check_columns(left, key, "the wanted rows")
    _check_columns(right, right_key, "the old table")
    out = np.full(left.num_rows, -1, dtype=np.int64)
    if left.num_rows == 0 or right.num_rows == 0:
        return out
    names = [f"k{i}" for i in range(len(key))]
    lk = pa.table([left.column(k).cast(right.schema.field(r).type) for k, r in zip(key, right_key)]
                  + [pa.array(np.arange(left.num_rows))], names=names + ["l_row"])
    rk = pa.table([right.column(r) for r in right_key] + [pa.array(np.arange(right.num_rows))], names=names + ["r_row"])
    on = " AND ".join(f"lk.{n} IS NOT DISTINCT FROM rk.{n}" for n in names)
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        con.register("lk", lk)
        con.register("rk", rk)
        joined = con.sql(f"SELECT l_row, r_row FROM lk JOIN rk ON {on}").to_arrow_table()
    li = joined.column("l_row").to_numpy()
    ri = joined.column("r_row").to_numpy()
    if len(li) and np.bincount(li, minlength=left.num_rows).max() > 1:
        # A key the old table holds twice: keep the later row, as a dict would.
        order = np.lexsort((ri, li))
        li, ri = li[order], ri[order]
        last = np.r_[li[1:] != li[:-1], True]
        li, ri = li[last], ri[last]
    out[li] = ri
    return out


def lookup(left: pa.Table, right: pa.Table, key: Sequence[str], columns: dict[str, str] | Sequence[str], *,
           right_key: Sequence[str] | None = None) -> pa.Table:
    """`left` with columns of `right` appended (renamed by `columns` when it is a dict),
    taken from the last row of `right` whose `right_key` (default `key`) equals left's
    `key`; null where there is none. Left's rows, in left's order (a dict lookup per row,
    as one join)."""
    columns = dict(columns) if isinstance(columns, dict) else {c: c for c in columns}
    _check_columns(right, list(columns), "the looked-up table")
    idx = match_rows(left, right, key, right_key)
    take = pa.array(idx, mask=idx < 0)
    for src, dst in columns.items():
        left = left.append_column(dst, right.column(src).take(take))
    return left


def _as_table(rows, schema: pa.Schema, what: str) -> pa.Table:
    if isinstance(rows, pa.Table):
        _check_columns(rows, schema.names, what)
        return rows.select(schema.names).cast(schema)
    return pa.Table.from_pylist(list(rows), schema=schema)


def reuse_rows(old: pa.Table, wanted: pa.Table, key: Sequence[str], schema: pa.Schema, compute: Compute, *,
               reusable: Callable[[pa.Table], "np.ndarray | pa.Array | list[bool]"] | None = None) -> Reuse:
    """The rows of `schema` for every row of `wanted`: an old row whose `key` columns equal
    the wanted row's (and that `reusable` accepts, given the matched old rows) is kept as it
    is; `compute` gets the other wanted rows, in order, and returns their rows. `compute` is
    not called when nothing is missing, so a rerun with nothing new builds no model."""
    key = list(key)
    _check_columns(wanted, key, "the wanted rows")
    _check_columns(old, schema.names, "the old table")
    missing_keys = [k for k in key if k not in schema.names]
    if missing_keys:
        raise ValueError(f"key columns {missing_keys} are not in the table's schema {schema.names}")
    old = old.select(schema.names)
    if not old.schema.equals(schema):
        old = old.cast(schema)
    idx = match_rows(wanted, old, key)
    matched = idx >= 0
    if reusable is not None and matched.any():
        ok = np.asarray(reusable(old.take(pa.array(idx[matched]))), dtype=bool)
        if ok.shape != (int(matched.sum()),):
            raise ValueError(f"reusable() gave {ok.size} answers for {int(matched.sum())} matched rows")
        matched[np.flatnonzero(matched)[~ok]] = False
    missing = np.flatnonzero(~matched)
    seconds = 0.0
    computed = schema.empty_table()
    if len(missing):
        started = time.perf_counter()
        computed = _as_table(compute(wanted.take(pa.array(missing))), schema, "the computed rows")
        seconds = time.perf_counter() - started
        if computed.num_rows != len(missing):
            raise ValueError(f"compute returned {computed.num_rows} rows for {len(missing)} missing keys")
    # One take from old + computed: a reused row's values are copied once, as Arrow buffers.
    position = idx.copy()
    position[missing] = old.num_rows + np.arange(len(missing))
    source = pa.concat_tables([old, computed]) if len(missing) else old
    table = source.take(pa.array(position))
    return Reuse(table=table, computed=computed, reused_mask=matched, seconds=seconds)


def constant(table: pa.Table, name: str, value, type_: pa.DataType = pa.string()) -> pa.Table:
    """`table` with a column `name` holding `value` on every row."""
    return table.append_column(name, pa.array([value] * table.num_rows, type=type_))
