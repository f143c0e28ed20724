"""Two runs of one model partition take turns on its folder (issue 13: partition locks for
model folders): a real materialization waits while another holder has the lock."""

import threading
import time

import dagster as dg

from geo_assets.run.execution import all_assets
from geo_assets.defs.partitions import GEOCELL_PARTITIONS_NAME, model_partition_key
from geo_assets.store.locks import partition_lock


def test_training_waits_for_the_model_folder_lock(dagster_resources):
    layout = dagster_resources["storage"].layout()
    key = model_partition_key("unblurred", "0.1")
    finished = threading.Event()
    result = {}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, ["0.1"])

        def run():
            result["run"] = dg.materialize(all_assets(), selection=["geolocator_model"], partition_key=key,
                                           instance=instance, resources=dagster_resources, raise_on_error=False)
            finished.set()

        with partition_lock(layout.root, "geolocator_model", "unblurred_0.1"):
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            time.sleep(3.0)
            assert not finished.is_set(), "the run went ahead while another holder had the model folder"
        assert finished.wait(120)
        worker.join(5)
    # With the lock free the run goes on, and fails with a clear message: nothing is embedded here.
    run = result["run"]
    assert not run.success
    failure = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "embedded images" in failure.event_specific_data.error.message
