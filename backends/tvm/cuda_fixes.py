"""Rewrites of TVM 0.27's CUDA source that nvcc would otherwise reject, applied through
TVM's ``tvm_callback_cuda_postproc`` hook before the source is kept or compiled.

- A float16/bfloat16 infinity or NaN constant is printed as ``inff``/``nanf``, which are
  not CUDA identifiers (``__float2bfloat16_rn(-inff/*-inf*/)``: a masked_fill with -inf,
  a max pool's padding, in bf16). The float32 bit patterns say the same in any CUDA.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"\b(inf|nan)f(?=/\*)")
_BITS = {"inf": "__int_as_float(0x7f800000)", "nan": "__int_as_float(0x7fc00000)"}


def fix_cuda_source(code: str) -> str:
    return _SPECIAL.sub(lambda m: _BITS[m.group(1)], code)
