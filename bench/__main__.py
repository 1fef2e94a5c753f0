"""Run every `bench/bench_*.py` module in turn (`make bench`), each with its default arguments.

`python -m bench features simulator` runs only the named areas.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    wanted = set(sys.argv[1:] if argv is None else argv)
    names = sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_")
    )
    if wanted:
        names = [n for n in names if n.removeprefix("bench_") in wanted]
    failed = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"\n#### {name} ####", flush=True)
        started = time.perf_counter()
        saved = sys.argv
        sys.argv = [f"bench.{name}"]  # each module parses its own (default) arguments
        try:
            module.main()
        except Exception as exc:  # noqa: BLE001 - report and go on with the other areas
            failed.append(name)
            print(f"{name} failed: {exc!r}", flush=True)
        finally:
            sys.argv = saved
        print(f"#### {name} done in {time.perf_counter() - started:.1f} s", flush=True)
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
