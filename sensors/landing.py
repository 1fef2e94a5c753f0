"""New landing files -> materialize the matching raw_ticks/features partitions.

The cursor maps `<product>/<day>` to the file's last seen mtime (ns), so a file is processed
again only when the ingestor appended to it; the run_key `<product>|<day>|<mtime_ns>` makes a
repeated tick with the same cursor harmless (Dagster skips duplicate run keys).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from assets.partitions import daily_partitions, partition_key, product_partitions
from orchestration.automation import env_int, sensor_status
from orchestration.jobs import ingest_features_job
from orchestration.resources import LakeResource


@dataclass(frozen=True)
class LandingFile:
    product: str
    day: str
    path: Path
    mtime_ns: int

    @property
    def cursor_key(self) -> str:
        return f"{self.product}/{self.day}"


def landing_files(raw_dir: Path) -> list[LandingFile]:
    """`<raw>/<product>/<YYYY-MM-DD>.ndjson` files, sorted by (day, product)."""
    found = []
    for path in Path(raw_dir).glob("*/*.ndjson"):
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            continue
        found.append(LandingFile(path.parent.name, path.stem, path, mtime))
    return sorted(found, key=lambda f: (f.day, f.product))


def changed_files(files: list[LandingFile], cursor: dict[str, int]) -> list[LandingFile]:
    return [f for f in files if cursor.get(f.cursor_key) != f.mtime_ns]


@dg.sensor(
    job=ingest_features_job,
    minimum_interval_seconds=env_int("CRYPTOVOL_LANDING_SENSOR_INTERVAL_S", 300),
    default_status=sensor_status(),
    description="Requests raw_ticks + features for each (day, product) landing file that is new or grew.",
)
def new_landing_files_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    settings = lake.settings()
    cursor: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    known_days = set(daily_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
    known_products = set(product_partitions.get_partition_keys())
    requests, skipped = [], []
    for file in changed_files(landing_files(settings.raw_dir), cursor):
        cursor[file.cursor_key] = file.mtime_ns
        if file.day not in known_days or file.product not in known_products:
            skipped.append(str(file.path))
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"{file.product}|{file.day}|{file.mtime_ns}",
                partition_key=partition_key(file.day, file.product),
                tags={"cryptovol/trigger": "new_landing_file", "cryptovol/landing_file": str(file.path)},
            )
        )
    if skipped:
        context.log.warning(
            f"ignored {len(skipped)} landing file(s) outside the partitions "
            f"(CRYPTOVOL_START_DATE / CRYPTOVOL_PRODUCTS): {skipped[:5]}"
        )
    if not requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason("no new or grown landing files"),
            cursor=json.dumps(cursor, sort_keys=True),
        )
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))
