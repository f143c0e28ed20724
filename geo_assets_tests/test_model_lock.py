"""Two runs of one model partition take turns on its folder (issue 13: partition locks for
model folders): a real materialization started while another holder has the lock gets no
further than the lock until that holder lets go."""

import threading
import time

import dagster as dg

from geo_assets.run.execution import all_assets
from geo_assets.defs.partitions import GEOCELL_PARTITIONS_NAME, model_partition_key
from geo_assets.store.locks import partition_lock


def _event_times(instance, event_type: dg.DagsterEventType) -> list[float]:
    return [e.timestamp for run in instance.get_runs() for e in instance.all_logs(run.run_id, of_type=event_type)]


def test_training_waits_for_the_model_folder_lock(dagster_resources):
    layout = dagster_resources["storage"].layout()
    key = model_partition_key("unblurred", "0.1")
    result = {}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, ["0.1"])

        def run():
            result["run"] = dg.materialize(all_assets(), selection=["geolocator_model"], partition_key=key,
                                           instance=instance, resources=dagster_resources, raise_on_error=False)

        worker = threading.Thread(target=run, daemon=True)
        with partition_lock(layout.root, "geolocator_model", "unblurred_0.1"):
            worker.start()
            deadline = time.monotonic() + 120
            while not _event_times(instance, dg.DagsterEventType.STEP_START):
                assert time.monotonic() < deadline, "the step never started"
                time.sleep(0.1)
            # The step is running; without the lock it would fail (nothing is embedded) within this time.
            time.sleep(3.0)
            released_at = time.time()
        worker.join(120)
        assert not worker.is_alive()
        failed_at = _event_times(instance, dg.DagsterEventType.STEP_FAILURE)
    # The step ended (it fails with a clear message: nothing is embedded here) only after the release.
    run = result["run"]
    assert not run.success
    failure = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "embedded images" in failure.event_specific_data.error.message
    assert len(failed_at) == 1 and failed_at[0] > released_at, (failed_at, released_at)
