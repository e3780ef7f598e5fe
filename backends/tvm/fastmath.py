"""Vectorizable exp, erf and tanh for float32 as plain TIR arithmetic.

LLVM turns ``tirx.exp``/``tirx.erf`` on a vector into one libm call per lane, which makes
softmax, sigmoid and GELU several times slower than eager torch. These are Cephes' expf
(range reduction + degree-7 polynomial, ~1 ulp) and Eigen's rational erf (the same ones
TVM's ``topi.fast_exp``/``fast_erf`` use), written on expressions so they fuse into any
kernel. Other dtypes keep the precise intrinsics.
"""

from __future__ import annotations

import math

import tvm
import tvm_ffi
from tvm import tirx

_EXP_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
          1.6666665459e-1, 5.0000001201e-1)
_ERF_ALPHA = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
              -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
              -1.60960333262415e-02)
_ERF_BETA = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
             -7.37332916720468e-03, -1.42647390514189e-02)


def _f(value: float) -> tirx.PrimExpr:
    return tirx.const(value, "float32")


def _horner(x: tirx.PrimExpr, coefficients: tuple[float, ...]) -> tirx.PrimExpr:
    acc = _f(coefficients[0])
    for c in coefficients[1:]:
        acc = acc * x + _f(c)
    return acc


def exp(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """e^x: x = n ln2 + r, e^x = 2^n p(r); 0 below the float range, inf above (from
    88.38, where torch still gives a finite ~2.4e38), NaN passes through."""
    lo, hi = -87.33654, 88.3762626647949  # 2^n stays a normal float
    xc = tirx.min(tirx.max(x, _f(lo)), _f(hi))
    n = tirx.floor(xc * _f(1.0 / math.log(2.0)) + _f(0.5))
    r = xc - n * _f(0.693359375) - n * _f(-2.12194440e-4)  # Cody-Waite: ln2 = hi + lo
    p = _horner(r, _EXP_P) * r * r + r + _f(1.0)
    two_n = tirx.reinterpret("float32", tirx.shift_left(n.astype("int32") + 127, 23))
    value = p * two_n
    value = tirx.Select(x < _f(lo), _f(0.0), tirx.Select(x > _f(hi), _f(math.inf), value))
    return tirx.Select(tirx.isnan(x), x, value)


def erf(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """erf(x) as p(x)/q(x) on x clamped to [-4, 4] (erf is +-1 in float32 beyond)."""
    xc = tirx.min(tirx.max(x, _f(-4.0)), _f(4.0))
    x2 = xc * xc
    return tirx.Select(tirx.isnan(x), x, xc * _horner(x2, _ERF_ALPHA) / _horner(x2, _ERF_BETA))


_TANH_P = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
           -3.33332819422e-1)


def tanh(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """Cephes' tanhf: an odd polynomial for |x| < 0.625, 1 - 2 / (e^2x + 1) beyond (both
    computed, one selected, so it vectorizes); +-1 for large |x|, NaN passes through.
    GPT-2's tanh GELU spent its time in a libm call per lane. Written so ``x`` is read
    few times (no |x|): a fused producer's expression is copied at every read."""
    big = _f(1.0) - _f(2.0) / (exp(x * _f(2.0)) + _f(1.0))
    z = x * x
    small = _horner(z, _TANH_P) * z * x + x
    return tirx.Select(tirx.And(x < _f(0.625), x > _f(-0.625)), small, big)


_NAN_BITS = {"float32": ("int32", 0x7FFFFFFF, 0x7F800000),
             "float16": ("int16", 0x7FFF, 0x7C00),
             "float64": ("int64", 0x7FFFFFFFFFFFFFFF, 0x7FF0000000000000)}
_ISNAN = tvm.ir.Op.get("tirx.isnan")


def bits_isnan(x: tirx.PrimExpr) -> tirx.PrimExpr | None:
    """x is NaN as a test on its bits (exponent all ones, mantissa not zero), or None for
    a dtype without a table entry."""
    entry = _NAN_BITS.get(str(x.ty))
    if entry is None:
        return None
    bits, magnitude, inf = entry
    return tirx.bitwise_and(tirx.reinterpret(bits, x), tirx.const(magnitude, bits)) \
        > tirx.const(inf, bits)


def vectorizable_isnan(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` with every ``tirx.isnan`` a test on the bits. TVM's vectorizer runs a loop
    that calls ``isnan`` scalar, and every NaN-keeping op calls it: the exp of each
    softmax, the erf of each GELU epilogue, max pooling ran one lane at a time on the CPU
    (``x != x`` its simplifier folds to false). GPU code keeps ``isnan``: its loops are
    threads, and vectors of the bit test's bools do not compile there."""

    def visit(call: tvm.ir.Call, mutator: tvm_ffi.StructuralMutator) -> tvm.ir.Call:
        call = mutator.default_mutate(call)
        if isinstance(call.op, tvm.ir.Op) and call.op.same_as(_ISNAN):
            test = bits_isnan(call.args[0])
            return call if test is None else test
        return call

    return func.with_body(tvm_ffi.structural_mutate(func.body, [(tvm.ir.Call, visit)]))
