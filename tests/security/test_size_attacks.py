"""Issue #13, cause 3: every size attack is refused with bounded memory (peak RSS, child).

One child process imports probpath, loads an honest data set (the baseline peak), then each
attack of :mod:`_size_attacks`. ``ru_maxrss`` is the process's peak resident memory, so the
last line bounds every attack together. Each refusal happens before the large allocation,
so the peak may grow only by allocator noise and small headers: 64 MiB is the bound, against
the 200 MiB to 800 GB the files announce.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HELPER = Path(__file__).parent / "_size_attacks.py"
_spec = importlib.util.spec_from_file_location("_size_attacks", HELPER)
attacks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(attacks)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB and /dev/zero: Linux")
def test_size_attacks_are_refused_with_bounded_peak_memory(tmp_path):
    args = ["data", "moons"]
    for case, (_, kind) in attacks.CASES.items():
        args += [kind, str(attacks.build(case, tmp_path / case))]
    out = subprocess.run(
        [sys.executable, str(HELPER), *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = [line.split() for line in out.stdout.splitlines()]
    assert lines[1][0] == "ok"  # the honest data set
    baseline = int(lines[1][1])
    for case, (outcome, _) in zip(attacks.CASES, lines[2:], strict=True):
        assert outcome in ("ValueError", "CheckpointError", "ResourceLimitError"), (case, outcome)
    assert int(lines[-1][1]) - baseline < 64 * 1024, lines
