"""The TVM backend: lowering our IR to Relax + TIR, schedules, build and run.

TVM sizes its CPU thread pool from ``TVM_NUM_THREADS``, else from half the hardware
threads (it takes every core to have two): on this 2-vCPU machine one thread, and every
kernel ran at half speed (GPT-2 112 ms against 60). Unless the user chose a number, the
pool gets every CPU this process may run on, as torch's does. Read when the pool starts,
at the first parallel kernel, so setting it here, on import, is in time.
"""

import os

if "TVM_NUM_THREADS" not in os.environ:
    os.environ["TVM_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))
