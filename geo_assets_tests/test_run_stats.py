"""Per-asset time of a set of runs, from the real event log."""

import time

import dagster as dg

from geo_assets.run.stats import materialization_counts, stage_table, stage_totals, step_seconds


SLEEP_S = 0.4


@dg.asset
def ocr_text() -> dg.MaterializeResult:
    time.sleep(SLEEP_S)  # a known duration the step's measured seconds must contain
    return dg.MaterializeResult(metadata={"ocr_computed": 3, "ocr_reused": 1})


@dg.asset(deps=[ocr_text])
def downstream() -> None:
    return None


def test_step_seconds_and_counts_come_from_a_real_run():
    with dg.instance_for_test() as instance:
        result = dg.materialize([ocr_text, downstream], instance=instance)
        steps = step_seconds(instance, result.run_id)
        counts = materialization_counts(result)
    assert set(steps) == {"ocr_text", "downstream"}
    # The step's time from its start and success events: the sleep, and not the whole run.
    assert SLEEP_S <= steps["ocr_text"] < SLEEP_S + 10, steps
    assert steps["downstream"] < steps["ocr_text"], steps
    assert counts == {"ocr_text": {"ocr_computed": 3, "ocr_reused": 1}}


def test_stage_totals_sum_over_runs_and_divide_by_computed_items():
    runs = [({"ocr_text": 2.0, "downstream": 1.0}, {"ocr_text": {"ocr_computed": 4}}),
            ({"ocr_text": 1.0}, {"ocr_text": {"ocr_computed": 0}})]
    totals = stage_totals(runs)
    assert totals["ocr_text"] == {"seconds": 3.0, "computed": 4, "runs": 2}
    assert totals["downstream"] == {"seconds": 1.0, "computed": 0, "runs": 1}
    table = stage_table(totals).splitlines()
    assert table[2] == "| ocr_text | 2 | 3.0 | 4 | 0.750 |"
    assert table[3] == "| downstream | 1 | 1.0 | - | - |"
