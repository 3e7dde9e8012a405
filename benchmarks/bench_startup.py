"""Start-up time of ``probpath --help`` / ``probpath info`` vs ``import torch`` (interleaved).

    python benchmarks/bench_startup.py --src /path/to/old/src --src src --reps 5

Prints a Markdown table: median and range (seconds) of each command per source tree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", required=True, help="a src/ tree (repeat)")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    cmds = {"python -c 'import torch'": ([sys.executable, "-c", "import torch"], None)}
    for src in args.src:
        for sub in ("--help", "info"):
            cmds[f"probpath {sub} ({src})"] = ([sys.executable, "-m", "probpath", sub], src)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(args.reps):
        for name, (cmd, src) in cmds.items():
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            if src:
                env["PYTHONPATH"] = os.path.abspath(src)
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True, cwd="/")
            times[name].append(time.perf_counter() - t0)
    print("| command | median s | range s |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} |")


if __name__ == "__main__":
    main()
