"""`cryptovol drift`: an Evidently drift report of recent features against a reference window."""

from __future__ import annotations

import argparse

HELP = (
    "drift report (Evidently): recent features vs the champion's training window "
    "(or an explicit reference window); writes <data>/reports/drift/<ts>.{html,json} + latest.json"
)


def configure(parser: argparse.ArgumentParser) -> None:
    ref = parser.add_mutually_exclusive_group()
    ref.add_argument(
        "--reference-from-champion", action="store_true",
        help="reference = the champion's training window (default when no --reference-start)",
    )
    ref.add_argument("--reference-start", metavar="ISO", help="reference window start (UTC ISO-8601)")
    parser.add_argument("--reference-end", metavar="ISO", help="reference window end (UTC ISO-8601)")
    parser.add_argument(
        "--current-minutes", type=float, default=None, metavar="M",
        help="length of the current window, ending at the latest feature row (default 15)",
    )
    parser.add_argument(
        "--current-end", metavar="ISO",
        help="end the current window here instead of at the latest feature row (a look back)",
    )
    parser.add_argument("--products", help="comma-separated products (default: all in the lake)")
    parser.add_argument("--threshold", type=float, help="per-column drift threshold (default 0.5)")
    parser.add_argument(
        "--drift-share", type=float, help="dataset drift when this share of columns drifted (default 0.5)"
    )
    parser.add_argument(
        "--method", help="Evidently stat test per column (default wasserstein, normalized distance)"
    )
    parser.add_argument(
        "--sample-every-s", type=float, help="decimate to one row per product per S seconds (default 1)"
    )
    parser.add_argument(
        "--fail-on-drift", action="store_true", help="exit with code 3 when dataset drift is detected"
    )
    parser.add_argument(
        "--every", type=float, metavar="S",
        help="monitor mode: write a report every S seconds until stopped (SIGINT/SIGTERM)",
    )
    parser.add_argument(
        "--metrics-port", type=int, metavar="P",
        help="monitor mode: serve drift gauges on port P /metrics (Prometheus; address: "
        "$CRYPTOVOL_METRICS_BIND_ADDRESS, default 127.0.0.1)",
    )
    parser.add_argument("--duration", type=float, metavar="S", help="monitor mode: stop after S seconds")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cryptovol.config import Settings, parse_products
    from cryptovol.drift import DriftConfig, DriftError, Window, build_drift_report
    from cryptovol.ticks import TickError, parse_timestamp_ns

    settings = Settings.from_env()
    config = DriftConfig()
    overrides = {
        "current_minutes": args.current_minutes,
        "threshold": args.threshold,
        "drift_share": args.drift_share,
        "method": args.method,
        "sample_every_s": args.sample_every_s,
    }
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})

    reference = None
    if args.reference_start or args.reference_end:
        if not (args.reference_start and args.reference_end):
            print("error: --reference-start and --reference-end go together")
            return 2
        try:
            reference = Window(
                parse_timestamp_ns(args.reference_start), parse_timestamp_ns(args.reference_end)
            )
        except TickError as exc:
            print(f"error: bad reference window: {exc}")
            return 2
        if reference.end_ns <= reference.start_ns:
            print("error: --reference-end must be after --reference-start")
            return 2
    products = parse_products(args.products) if args.products else None
    current_end = None
    if args.current_end:
        try:
            current_end = parse_timestamp_ns(args.current_end)
        except TickError as exc:
            print(f"error: bad --current-end: {exc}")
            return 2
    if args.every or args.metrics_port:
        from cryptovol.drift import DriftMonitor

        monitor = DriftMonitor(settings, config, reference=reference, products=products)
        return monitor.run(
            every_s=args.every or 300.0, metrics_port=args.metrics_port, duration_s=args.duration,
            out=print,
        )
    try:
        result = build_drift_report(
            settings, config, reference=reference, products=products, current_end_ns=current_end
        )
    except DriftError as exc:
        print(f"error: {exc}")
        return 1
    print_summary(result.summary, config)
    return 3 if (args.fail_on_drift and result.summary["dataset_drift"]) else 0


def print_summary(s: dict, config) -> None:
    print(
        f"drift share {s['drift_share']:.2f} (threshold {config.drift_share:.2f}) -> "
        f"dataset drift: {'YES' if s['dataset_drift'] else 'no'}; "
        f"drifted: {', '.join(s['drifted_columns']) or 'none'}"
    )
    print(
        f"reference {s['reference_window']['start']} .. {s['reference_window']['end']} "
        f"({s['n_reference']} rows, {s.get('reference_source')}); "
        f"current {s['current_window']['start']} .. {s['current_window']['end']} ({s['n_current']} rows)"
    )
    if s.get("prediction_drift"):
        p = s["prediction_drift"]
        print(f"prediction drift: {p['test']} {p['statistic']:.3f} -> {'YES' if p['drifted'] else 'no'}")
    if s.get("live_pr_auc"):
        p = s["live_pr_auc"]
        print(f"live PR-AUC {p['pr_auc']:.3f} (training {p.get('training_pr_auc')}) on {p['n']} rows")
    print(f"report: {s.get('html_path')}\nsummary: {s.get('json_path')}")
