"""Source locations: the user's ``file.py:LINE in fn`` for a torch node, taken from the
innermost frame of its recorded stack trace that is not torch's own code."""

from __future__ import annotations

import os
import re

import torch

_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>[^\n]+)')
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_SITE = f"{os.sep}site-packages{os.sep}"


def source_from_stack_trace(stack_trace: str | None) -> str | None:
    """``"models/net.py:12 in forward"`` for the innermost non-torch frame, or None."""
    if not stack_trace:
        return None
    frames = [m for m in _FRAME.finditer(stack_trace)
              if not m["file"].startswith(_TORCH_DIR) and "/compiler/capture/" not in m["file"]]
    if not frames:
        return None
    last = frames[-1]
    return f"{short_path(last['file'])}:{last['line']} in {last['func'].strip()}"


def short_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it; an installed
    package's file from its package directory (``transformers/models/bert/...``)."""
    if _SITE in path:
        return path.split(_SITE, 1)[1]
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if rel.startswith("..") else rel
