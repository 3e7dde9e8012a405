"""Peak memory of issue #13's size attacks, before and after the fix (one child per case).

Each case of ``tests/security/_size_attacks.py`` is loaded in a fresh child process whose
address space is capped (``RLIMIT_AS``, default 8 GiB, so that the unfixed code cannot take
the machine); the child prints its peak RSS (``ru_maxrss``). The baseline child loads an
honest data set. Run it against two source trees to compare:

    python benchmarks/bench_security_rss.py --src /path/to/old/src --src src

Prints one Markdown table: case, outcome and peak RSS (MiB) per source tree.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HELPER = Path(__file__).resolve().parents[1] / "tests" / "security" / "_size_attacks.py"


def _attacks():
    spec = importlib.util.spec_from_file_location("_size_attacks", HELPER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(src: str, kind: str, path: str, cap_bytes: int) -> tuple[str, float]:
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, str(HELPER), kind, path], capture_output=True, text=True, env=env,
        preexec_fn=limit, timeout=600,
    )  # fmt: skip
    lines = out.stdout.split("\n")
    last = [ln.split() for ln in lines if ln.strip()]
    if len(last) < 2:
        return f"died (rc {out.returncode})", float("nan")
    return last[-1][0], int(last[-1][1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", required=True, help="a src/ tree (repeat)")
    parser.add_argument("--cap-gib", type=float, default=8.0, help="RLIMIT_AS of each child")
    parser.add_argument("--cases", default=None, help="comma-separated subset of the rows")
    args = parser.parse_args()
    cap = int(args.cap_gib * 2**30)
    attacks = _attacks()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PYTHONPATH"] = args.src[-1]  # the builders save models with this tree
        sys.path.insert(0, args.src[-1])
        honest = attacks.build_honest_run(Path(tmp) / "honest")
        cases = {"baseline data (moons)": ("data", "moons"), "baseline run (cfm)": ("run", honest)}
        wanted = None if args.cases is None else set(args.cases.split(","))
        for name, (_, kind) in attacks.CASES.items():
            if wanted is None or name in wanted:
                cases[name] = (kind, str(attacks.build(name, Path(tmp) / name)))
        cases = {k: v for k, v in cases.items() if wanted is None or k in wanted or "base" in k}
        head = " | ".join(
            f"{Path(s).resolve().parent.name}/src: outcome, peak MiB" for s in args.src
        )
        print(f"| case | {head} |\n|---|" + "---|" * len(args.src))
        for name, (kind, path) in cases.items():
            cells = []
            for src in args.src:
                outcome, mib = _child(src, kind, path, cap)
                cells.append(f"{outcome}, {mib:.0f}")
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
