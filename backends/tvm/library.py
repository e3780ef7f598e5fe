"""Load an exported program library (``BuiltModule.export_library``) without trusting it.

``tvm.runtime.load_module`` dlopens the file, and the dynamic loader maps the segments
the ELF header promises: a truncated library (a copy cut short, a full disk) has them
past the end of the file, and touching them kills the process with SIGBUS instead of
raising. So before loading we check what the loader relies on: the ELF64 magic, and that
the program headers, every loadable segment and the section header table (written last)
lie inside the file.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

_PT_LOAD = 1


class LibraryError(ValueError):
    """A program library that is not a whole ELF64 shared object."""


def check_library(path: str | Path) -> None:
    """Raise ``LibraryError`` saying what is wrong when ``path`` is truncated or not ELF64."""
    path = Path(path)
    data = path.read_bytes()
    size = len(data)
    if size < 64 or data[:4] != b"\x7fELF" or data[4] != 2:
        raise LibraryError(f"{path.name} is not an ELF64 shared library ({size} bytes)")
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    if phoff + phnum * phentsize > size:
        raise LibraryError(f"{path.name} is truncated: its program headers end past its "
                           f"{size} bytes")
    for i in range(phnum):
        kind, = struct.unpack_from("<I", data, phoff + i * phentsize)
        offset, = struct.unpack_from("<Q", data, phoff + i * phentsize + 8)
        filesz, = struct.unpack_from("<Q", data, phoff + i * phentsize + 32)
        if kind == _PT_LOAD and offset + filesz > size:
            raise LibraryError(f"{path.name} is truncated: a segment ends at byte "
                               f"{offset + filesz}, the file has {size}")
    if shoff + shnum * shentsize > size:
        raise LibraryError(f"{path.name} is truncated: its section headers end at byte "
                           f"{shoff + shnum * shentsize}, the file has {size}")


def load_library(path: str | Path) -> Any:
    """``tvm.runtime.load_module(path)`` after ``check_library``."""
    import tvm

    check_library(path)
    return tvm.runtime.load_module(str(path))
