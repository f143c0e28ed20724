"""`geo-assets run --in-process`: a quiet console (progress bar and stage table, not
Dagster's DEBUG event log), runs recorded in the instance, and a clear refusal of a
bad geocell list before any model trains."""

import dagster as dg
import pytest

from geo_assets.cli import main


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    storage = tmp_path / "storage"
    monkeypatch.setenv("GEO_ASSETS_STORAGE", str(storage))
    monkeypatch.setenv("GEO_ASSETS_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("DAGSTER_HOME", str(storage))
    return storage


@pytest.mark.slow
def test_in_process_run_prints_progress_not_the_event_log(isolated, capsys):
    assert main(["run", "--in-process", "--tiles", "1", "--images-per-tile", "3", "--skip-models"]) == 0
    out, err = capsys.readouterr()
    console = out + err
    assert "tiles [" in err and "1/1" in err and "img/s" in err  # the progress bar (stderr, not a terminal)
    assert "| raw_images |" in out and "| embeddings |" in out  # the stage table
    assert " - DEBUG - " not in console and "STEP_START" not in console  # Dagster's log stays in the instance
    assert len(console.splitlines()) < 40, console
    with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME = the isolated storage
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
        assert any(True for _ in instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.STEP_START))


def test_refused_geocell_list_fails_before_training(isolated, capsys, monkeypatch):
    isolated.mkdir(parents=True)
    (isolated / "geocells.txt").write_text("0.1\n0.00001\n")
    # Tiles are skipped by asking for none of the models' inputs: the refusal comes from the
    # geocell sensor's check, which the main job runs before any model partition exists.
    from geo_assets.run import execution
    from geo_assets.defs.resources import build_resources

    with dg.instance_for_test() as instance:
        with pytest.raises(ValueError, match="geocells.txt:2"):
            execution.sync_geocells(instance, build_resources())
        assert execution.existing_geocells(instance) == []
