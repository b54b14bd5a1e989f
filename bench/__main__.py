"""Run every benchmark module in ``bench/`` (each exposes ``main()``), one after another."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench


def main(argv: list[str]) -> int:
    names = argv or sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")
    )
    if not names:
        print("bench: no benchmark modules found", file=sys.stderr)
        return 1
    failed = []
    for name in names:
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.monotonic()
        module = importlib.import_module(f"bench.{name}")
        try:
            module.main()
        except Exception as exc:  # report it and go on to the next benchmark
            print(f"bench.{name} failed: {exc!r}", flush=True)
            failed.append(name)
        print(f"=== bench.{name}: {time.monotonic() - started:.1f} s ===", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
