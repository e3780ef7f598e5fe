"""Every benchmark in turn (``make bench``): the machine's sgemm rate, memory planning, then
the model table. Arguments go to ``run_models.py`` (``--tiny`` for a run of minutes).

    python benchmarks/run_all.py [--tiny]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    for script, args in (("roofline.py", []), ("bench_memory.py", []),
                         ("run_models.py", sys.argv[1:])):
        print(f"\n== {script} {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *args]).returncode:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
