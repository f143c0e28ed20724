"""Per-asset time of a set of runs, from the real event log."""

import time

import dagster as dg

from geo_assets.run.stats import (
    counts_from_log, materialization_counts, run_peak_mib, stage_table, stage_totals, step_seconds,
)


SLEEP_S = 0.4


@dg.asset
def ocr_text() -> dg.MaterializeResult:
    time.sleep(SLEEP_S)  # a known duration the step's measured seconds must contain
    return dg.MaterializeResult(metadata={"rows_computed": 3, "rows_reused": 1, "seconds_per_row": 0.5})


@dg.asset(deps=[ocr_text])
def downstream() -> None:
    return None


@dg.asset(deps=[downstream])
def raw_images() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"new_images": 2, "total_images": 5})


def test_step_seconds_and_counts_come_from_a_real_run():
    with dg.instance_for_test() as instance:
        result = dg.materialize([ocr_text, downstream, raw_images], instance=instance)
        steps = step_seconds(instance, result.run_id)
        counts = materialization_counts(result)
        logged = counts_from_log(instance, result.run_id)
    assert set(steps) == {"ocr_text", "downstream", "raw_images"}
    # The step's time from its start and success events: the sleep, and not the whole run.
    assert SLEEP_S <= steps["ocr_text"] < SLEEP_S + 10, steps
    assert steps["downstream"] < steps["ocr_text"], steps
    # Any asset reporting the uniform pair is counted; raw_images counts its pulls.
    assert counts == logged == {"ocr_text": {"rows_computed": 3, "rows_reused": 1},
                                "raw_images": {"new_images": 2, "total_images": 5}}


def test_stage_totals_sum_over_runs_and_divide_by_computed_items():
    runs = [({"ocr_text": 2.0, "downstream": 1.0}, {"ocr_text": {"rows_computed": 4}}),
            ({"ocr_text": 1.0}, {"ocr_text": {"rows_computed": 0}})]
    totals = stage_totals(runs)
    assert totals["ocr_text"] == {"seconds": 3.0, "computed": 4, "runs": 2, "peak_mib": None}
    assert totals["downstream"] == {"seconds": 1.0, "computed": 0, "runs": 1, "peak_mib": None}
    table = stage_table(totals).splitlines()
    assert table[2] == "| ocr_text | 2 | 3.0 | 4 | 0.750 | - |"
    assert table[3] == "| downstream | 1 | 1.0 | - | - | - |"


def test_peak_memory_of_a_run_is_the_largest_its_materializations_recorded():
    runs = [({"ocr_text": 2.0, "embeddings": 1.0},
             {"ocr_text": {"rows_computed": 4, "peak_mib": 900.0}, "embeddings": {"rows_computed": 8, "peak_mib": 1500.5}}),
            ({"ocr_text": 1.0}, {"ocr_text": {"rows_computed": 1, "peak_mib": 1200.0}})]
    assert run_peak_mib(runs[0][1]) == 1500.5 and run_peak_mib({"x": {"rows_computed": 1}}) is None
    totals = stage_totals(runs)
    assert totals["ocr_text"]["peak_mib"] == 1200.0 and totals["embeddings"]["peak_mib"] == 1500.5
    assert stage_table(totals).splitlines()[2] == "| ocr_text | 2 | 3.0 | 5 | 0.600 | 1200 |"


@dg.asset
def with_peak() -> dg.MaterializeResult:
    from geo_assets.defs.metadata import with_table_metadata

    result = next(with_table_metadata([dg.MaterializeResult(metadata={"rows_computed": 1})], lambda: 1))
    return result


def test_table_assets_record_the_process_peak_memory_and_the_log_reads_it_back():
    import resource

    with dg.instance_for_test() as instance:
        result = dg.materialize([with_peak], instance=instance)
        logged = counts_from_log(instance, result.run_id)
    peak_now = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # This process's peak so far: above a bare interpreter's, at most the peak measured after.
    assert 50 < logged["with_peak"]["peak_mib"] <= peak_now + 1, logged
