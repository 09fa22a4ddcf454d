"""The comparison report of run or sweep folders: `python -m spikerl.compare` (spikerl/compare.py), under
the name the results' READMEs recorded their commands with.

    python experiments/compare_methods.py multirun/<date> [more folders] [--baseline popsan] [--out <folder>]
"""

from __future__ import annotations

from spikerl.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
