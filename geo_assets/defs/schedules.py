"""The daily pull: one run per tile, each appending only images not yet stored."""

import dagster as dg

from geo_assets.defs.jobs import pull_job
from geo_assets.defs.partitions import tile_partitions_for
from geo_assets.defs.sensors import automation_status

PULL_CRON = "0 2 * * *"


def build_daily_pull(tiles: dg.PartitionsDefinition) -> dg.ScheduleDefinition:
    running = automation_status() == dg.DefaultSensorStatus.RUNNING
    status = dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED

    @dg.schedule(job=pull_job, cron_schedule=PULL_CRON, default_status=status)
    def daily_pull(context: dg.ScheduleEvaluationContext):
        """Every day, one run per tile; each appends only new images. Downstream stages
        react through automation conditions only where a tile's data version changed."""
        day = context.scheduled_execution_time.strftime("%Y-%m-%d") if context.scheduled_execution_time else "manual"
        for key in tiles.get_partition_keys():
            yield dg.RunRequest(run_key=f"{day}:{key}", partition_key=key)

    return daily_pull


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(schedules=[build_daily_pull(tile_partitions_for())])
