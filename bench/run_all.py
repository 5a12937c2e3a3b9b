"""Run every benchmark module in this folder, one after another (``make bench``)."""
from __future__ import annotations

import importlib
import pkgutil

import bench


def main() -> None:
    """Import each ``bench.bench_*`` module and call its ``main()``."""
    for module_info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if module_info.name.startswith("bench_"):
            print(f"\n## {module_info.name}\n", flush=True)
            importlib.import_module(f"bench.{module_info.name}").main()


if __name__ == "__main__":
    main()
