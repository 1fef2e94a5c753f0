"""Bootstrapping the demo's first champion: the service and the scorer need a model to serve.

On a fresh data dir: write a short *calm* synthetic history as landing files (the same generator
and file format as the ingestor), featurize it with the batch featurizer, train with the project's
walk-forward training, register and gate. The champion's training window (the history) becomes
the drift report's reference; the live simulator then changes volatility regime, the drift report
sees it, and the Dagster drift sensor retrains. On a data dir that already has landing files, no
history is written; if a champion exists, nothing is done.

The history is written by the launcher right before the simulator starts (no gap between history
and live ticks, so the live data continues the training segment); features and training run as
their own process (`python -m cryptovol.demo.bootstrap --no-history`) while the stream flows, so
the launcher stays light (MLflow and XGBoost imports) and the log is a file.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptovol.config import Settings, parse_products

if TYPE_CHECKING:
    from cryptovol.demo.launcher import Demo

log = logging.getLogger("cryptovol.demo.bootstrap")


def champion_version(settings: Settings) -> str | None:
    """The version the `champion` alias points at, or None (no registry, no model, no alias)."""
    try:
        import mlflow

        from cryptovol.models.registry import alias_version
    except ImportError:
        return None
    uri = settings.mlflow_tracking_uri
    # An explicit client for the registry in that store: `mlflow.set_registry_uri` exports
    # MLFLOW_REGISTRY_URI, so one inherited from a parent process could point somewhere else.
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        return alias_version(settings.model_name, "champion", client=client)
    except Exception:  # noqa: BLE001 (no database yet is "no champion")
        return None


def write_history(
    settings: Settings, products: tuple[str, ...], minutes: float, seed: int, rate_hz: float
) -> list[Path]:
    """A calm synthetic history ending a few seconds ago, as landing files under the data dir."""
    from cryptovol.simulator.synthetic import generate_landing_files

    end = datetime.now(UTC) - timedelta(seconds=1)
    start = end - timedelta(minutes=minutes)
    return generate_landing_files(
        settings.data_dir, products, start=start, duration_s=minutes * 60, seed=seed, rate_hz=rate_hz,
    )


def build_features(settings: Settings) -> int:
    from cryptovol import batch, lake

    partitions = lake.list_landing_partitions(settings.data_dir)
    results = batch.featurize_partitions(settings, partitions)
    return sum(int(getattr(r, "rows", 0)) for r in results)


def train_champion(settings: Settings) -> dict[str, Any]:
    """Train on every landed tick, register, gate; promote for the demo if the gate refused."""
    import pandas as pd

    from cryptovol import lake
    from cryptovol.models.dataset import build_training_set
    from cryptovol.models.registry import promote
    from cryptovol.models.training import TrainConfig, train
    from cryptovol.models.walkforward import WalkForwardConfig

    frames = [lake.read_landing_day(settings, product, day)
              for product, day in lake.list_landing_partitions(settings.data_dir)]
    ticks = pd.concat(frames, ignore_index=True)
    training_set = build_training_set(ticks)
    result = None
    # A short synthetic history can leave a walk-forward fold without a positive label; fewer,
    # larger folds are the fallback (the failure is logged, not hidden).
    for folds in (5, 3, 2):
        try:
            config = TrainConfig(walk_forward=WalkForwardConfig(n_folds=folds))
            result = train(training_set, settings=settings, config=config,
                           run_tags={"cryptovol/trigger": "demo-bootstrap"})
            break
        except ValueError as exc:
            log.warning("training with %d folds failed (%s); retrying with fewer folds", folds, exc)
    if result is None:
        raise RuntimeError("training failed with 5, 3 and 2 walk-forward folds; see the log")
    info: dict[str, Any] = {"version": result.version, "summary": result.summary_line(),
                            "run_id": result.run_id, "promoted_by_gate": False}
    if result.decision is not None and result.decision.promote:
        info["promoted_by_gate"] = True
    elif result.version is not None and champion_version(settings) is None:
        reason = ("demo bootstrap: the service needs a champion; the first model did not pass the "
                  "gate against the baselines on this short history")
        promote(settings.model_name, result.version, reason=reason)
        info["forced_reason"] = reason
    info["champion"] = champion_version(settings)
    return info


def run_bootstrap(
    settings: Settings, products: tuple[str, ...], *, minutes: float, seed: int, rate_hz: float,
    write_history_files: bool = True,
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    existing = champion_version(settings)
    if existing is not None:
        return {"champion": existing, "skipped": "a champion already exists"}
    started = time.monotonic()
    if write_history_files and not any(settings.raw_dir.glob("*/*.ndjson")):
        paths = write_history(settings, products, minutes, seed, rate_hz)
        report["history_files"] = [str(p) for p in paths]
        report["history_minutes"] = minutes
        log.info("wrote %.0f min of calm synthetic history: %s", minutes, ", ".join(map(str, paths)))
    report["feature_rows"] = build_features(settings)
    log.info("batch features: %s rows", report["feature_rows"])
    report.update(train_champion(settings))
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def prepare_history(demo: Demo) -> bool:
    """In the launcher, before the live stream starts: is a first champion needed, and if the data
    dir is fresh, write the calm history so that it ends a second before the simulator's first tick
    (no gap: batch features and the training segment run straight from history into live data).
    Returns whether `train_first_champion` should run."""
    o = demo.options
    missing = [m for m in ("cryptovol.simulator.synthetic", "cryptovol.batch", "cryptovol.models.training")
               if _missing(m)]
    if missing:
        demo.skip("bootstrap", f"{', '.join(missing)} not there yet: no first champion")
        return False
    existing = champion_version(demo.settings)
    if existing is not None:
        demo.out(f"  = bootstrap: champion v{existing} already in the registry")
        return False
    if not any(demo.settings.raw_dir.glob("*/*.ndjson")):
        started = time.monotonic()
        write_history(demo.settings, o.products, o.history_minutes, o.seed + 1000, o.rate_hz)
        demo.out(f"  + history: {o.history_minutes:g} min of calm synthetic ticks written as landing "
                 f"files in {time.monotonic() - started:.1f}s")
    return True


def train_first_champion(demo: Demo) -> None:
    """Batch features + walk-forward training + registry + gate, in a child process."""
    from cryptovol.procs import ManagedProcess

    o = demo.options
    out = demo.logs_dir / "bootstrap.json"
    out.unlink(missing_ok=True)
    process = ManagedProcess(
        "bootstrap",
        [sys.executable, "-m", "cryptovol.demo.bootstrap", "--products", ",".join(o.products),
         "--no-history", "--out", str(out)],
        log_path=demo.logs_dir / "bootstrap.log", env=demo.env,
    )
    demo.out(f"  * bootstrap: batch features -> first champion (log {process.log_path}) ...")
    started = time.monotonic()
    process.start()
    code = process.wait(timeout_s=900)
    if code != 0 or not out.exists():
        demo.skip("bootstrap", f"failed with exit code {code}; see {process.log_path}\n{process.tail(15)}")
        return
    report = json.loads(out.read_text())
    if report.get("skipped"):
        demo.out(f"  = bootstrap: {report['skipped']} (champion v{report['champion']})")
        return
    demo.out(f"  + bootstrap: {report.get('feature_rows')} feature rows, champion v{report.get('champion')} "
             f"in {time.monotonic() - started:.0f}s")
    demo.out(f"    {report.get('summary')}")
    if report.get("forced_reason"):
        demo.out(f"    note: {report['forced_reason']}")


def _missing(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bootstrap the demo's first champion")
    parser.add_argument("--products", default="BTC-USD,ETH-USD")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1007)
    parser.add_argument("--rate", type=float, default=4.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-history", action="store_true", help="do not write a synthetic history")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    report = run_bootstrap(settings, parse_products(args.products), minutes=args.minutes,
                           seed=args.seed, rate_hz=args.rate, write_history_files=not args.no_history)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
