"""`cryptovol models list|promote VERSION|rollback|show`: the champion/challenger registry."""

from __future__ import annotations

import argparse
import json

HELP = "list registered spike-model versions, promote one to champion, or roll back the champion"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="versions: aliases, kind, role, pooled out-of-sample PR-AUC, gate decision")
    promote = sub.add_parser("promote", help="make VERSION the champion (manual override of the gate)")
    promote.add_argument("version")
    promote.add_argument("--reason", default="manual promotion via `cryptovol models promote`")
    sub.add_parser("rollback", help="restore the previous champion")
    show = sub.add_parser("show", help="metadata of a model (default: the champion)")
    show.add_argument("ref", nargs="?", default="champion", help="alias or version number")
    parser.add_argument("--name", default=None, help="registered model name (default from settings)")


def run(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from cryptovol.config import Settings
    from cryptovol.models import registry
    from cryptovol.models.tracking import configure_tracking

    settings = Settings.from_env()
    name = args.name or settings.model_name
    configure_tracking(settings)
    try:
        if args.action == "list":
            rows = registry.list_versions(name)
            if not rows:
                print(f"no versions of {name} at {settings.mlflow_tracking_uri}")
                return 1
            print(f"{'version':>7}  {'aliases':<28} {'kind':<12} {'role':<19} {'PR-AUC':>7} {'Brier':>7}"
                  "  gate")
            for r in rows:
                pr = f"{float(r['pr_auc']):.3f}" if r["pr_auc"] else "-"
                br = f"{float(r['brier']):.3f}" if r["brier"] else "-"
                gate = {"True": "promoted", "False": "kept out"}.get(r["promoted"], "-")
                print(f"{r['version']:>7}  {','.join(r['aliases']) or '-':<28} {r['model_kind'] or '-':<12} "
                      f"{r.get('role') or '-':<19} {pr:>7} {br:>7}  {gate}: {r['reason'] or '-'}")
        elif args.action == "promote":
            previous = registry.promote(name, args.version, reason=args.reason)
            print(f"{name}: champion is now v{args.version} (previous: {previous or 'none'})")
        elif args.action == "rollback":
            restored = registry.rollback(name)
            print(f"{name}: rolled back; champion is now v{restored}")
        else:
            from cryptovol.models.pyfunc import load_spike_model

            ref = f"models:/{name}/{args.ref}" if args.ref.isdigit() else f"models:/{name}@{args.ref}"
            print(json.dumps(load_spike_model(ref).describe(), indent=2, default=str))
    except registry.RegistryError as exc:
        print(f"error: {exc}")
        return 1
    except MlflowException as exc:
        print(f"error: {exc.message}")
        return 1
    return 0
