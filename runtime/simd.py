"""Explicit 16-lane vector operations for the runtime's kernels (numba intrinsics, LLVM IR).

LLVM's loop vectoriser handles the scatters' short runtime-length loops badly: a weight row
of a 3x3 kernel row is ``3 * Cout`` floats (48 for 16 channels), below the vectoriser's
``width x interleave`` (64 floats with AVX-512), so the whole row ran in the scalar
remainder loop behind runtime alias checks.  These intrinsics emit ``<16 x float>``
loads, adds and stores directly; LLVM legalises them for the host (one AVX-512 operation,
two AVX2 ones, four SSE ones), so they are correct and vectorised on every x86-64 and
elsewhere.  Every operation is the scalar code's, in the same order, bit for bit.

* :func:`vadd1`, :func:`vadd2`, :func:`vadd4` -- ``dst[d:d+16] += src[o:o+16]``, or the
  pairwise sum of two or four source rows (``(s1 + s2) + (s3 + s4)``);
* :func:`if_fire16` -- the IF update of 16 neurons fused with the compaction of the fired
  indices (a vector compress).

The arrays must be one-dimensional and C-contiguous (typing fails otherwise); offsets
are element offsets, not checked against the bounds -- callers keep ``off + 16 <= len``.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic

LANES = 16


def _contiguous(*arrays) -> bool:
    return all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays)


def _ptr(context, builder, ty, value, offset, vec):
    """Pointer to element ``offset`` of a C-contiguous 1-d array, cast to ``vec*``."""
    data = context.make_array(ty)(context, builder, value).data
    return builder.bitcast(builder.gep(data, [offset]), vec.as_pointer())


def _vadd_codegen(n):
    def codegen(context, builder, signature, args):
        vf = ir.VectorType(ir.FloatType(), LANES)
        src_t = signature.args[2]
        rows = [builder.load(_ptr(context, builder, src_t, args[2], o, vf), align=4) for o in args[3:3 + n]]
        while len(rows) > 1:                # pairwise: (s1 + s2) + (s3 + s4)
            rows = [builder.fadd(rows[i], rows[i + 1]) for i in range(0, len(rows), 2)]
        pd = _ptr(context, builder, signature.args[0], args[0], args[1], vf)
        builder.store(builder.fadd(builder.load(pd, align=4), rows[0]), pd, align=4)
        return context.get_dummy_value()
    return codegen


def _vadd_sig(dst, src, n):
    if not _contiguous(dst, src) or dst.dtype != types.float32 or src.dtype != types.float32:
        return None
    return types.void(dst, types.int64, src, *([types.int64] * n))


@intrinsic
def vadd1(typingctx, dst, d, src, o1):
    """``dst[d:d+16] += src[o1:o1+16]`` (float32)."""
    sig = _vadd_sig(dst, src, 1)
    return (sig, _vadd_codegen(1)) if sig is not None else None


@intrinsic
def vadd2(typingctx, dst, d, src, o1, o2):
    """``dst[d:d+16] += src[o1:o1+16] + src[o2:o2+16]`` (float32)."""
    sig = _vadd_sig(dst, src, 2)
    return (sig, _vadd_codegen(2)) if sig is not None else None


@intrinsic
def vadd4(typingctx, dst, d, src, o1, o2, o3, o4):
    """``dst[d:d+16] += (src[o1:] + src[o2:]) + (src[o3:] + src[o4:])``, 16 floats each."""
    sig = _vadd_sig(dst, src, 4)
    return (sig, _vadd_codegen(4)) if sig is not None else None


def _llvm_version() -> tuple:
    import llvmlite.binding as llvm
    return tuple(llvm.llvm_version_info)


#: :func:`if_fire16` needs ``llvm.experimental.vector.compress`` (LLVM 19 on: llvmlite 0.45 on)
HAS_VECTOR_COMPRESS = _llvm_version() >= (19,)


def host_has_compress() -> bool:
    """Whether :func:`if_fire16` is worth using: LLVM has the vector compress and the code numba
    generates runs AVX-512F, where it is one ``vpcompressd``; elsewhere LLVM expands it lane by
    lane, slower than the branch-free scalar compaction, so the runtime keeps that one
    (``kernels._if_update``)."""
    if not HAS_VECTOR_COMPRESS:
        return False
    if config.CPU_FEATURES is not None:
        return "+avx512f" in config.CPU_FEATURES
    if config.CPU_NAME not in (None, "host"):
        return False
    import llvmlite.binding as llvm
    return bool(llvm.get_host_cpu_features().get("avx512f", False))


def _if_lanes(context, builder, signature, args, n, i):
    """The IF equations of the ``n`` neurons ``i .. i+n-1`` (``V`` = ``args[0]``, ``cur`` = ``args[1]``, float32):
    ``v = V + cur``, ``s = v >= 1``, ``V = v - s``; returns the ``<n x i1>`` spike mask and ``i`` broadcast to
    ``<n x i32>`` (the fired neurons' indices are ``i + lane``)."""
    i32 = ir.IntType(32)
    vf, vi = ir.VectorType(ir.FloatType(), n), ir.VectorType(i32, n)
    pv = _ptr(context, builder, signature.args[0], args[0], i, vf)
    pc = _ptr(context, builder, signature.args[1], args[1], i, vf)
    v = builder.fadd(builder.load(pv, align=4), builder.load(pc, align=4))
    one, zero = ir.Constant(vf, [1.0] * n), ir.Constant(vf, [0.0] * n)
    fired = builder.fcmp_ordered(">=", v, one)
    builder.store(builder.fsub(v, builder.select(fired, one, zero)), pv, align=4)
    base = builder.insert_element(ir.Constant(vi, ir.Undefined), builder.trunc(i, i32), ir.Constant(i32, 0))
    return fired, builder.shuffle_vector(base, ir.Constant(vi, ir.Undefined), ir.Constant(vi, [0] * n))


@intrinsic
def if_fire16(typingctx, Vn, cur, idx, i, k):
    """IF update of the 16 neurons ``i .. i+15``; returns how many fired.

    ``v = V[i:i+16] + cur[i:i+16]``, ``s = v >= 1``, ``V[i:i+16] = v - s`` (the scalar
    loop's float32 operations), and the fired neurons' indices ``i + lane``, compressed in
    increasing order (``llvm.experimental.vector.compress``, in a register), stored as one
    16-lane vector at ``idx[k:k+16]``: the entries past the fired ones are scratch that later
    blocks overwrite, so the caller needs ``k + 16 <= len(idx)`` -- true inside a population
    (``k <= i`` fired so far and ``i + 16 <= size``).  A masked compress *store* instead would
    write only the fired lanes, but is several times slower on Intel and AMD cores.
    """
    if not _contiguous(Vn, cur, idx) or Vn.dtype != types.float32 or cur.dtype != types.float32 \
            or idx.dtype != types.int32:
        return None
    sig = types.int64(Vn, cur, idx, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        vi = ir.VectorType(ir.IntType(32), LANES)
        vm = ir.VectorType(ir.IntType(1), LANES)
        fired, base = _if_lanes(context, builder, signature, args, LANES, args[3])
        ids = builder.add(base, ir.Constant(vi, list(range(LANES))))
        compress = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vi, [vi, vm, vi]), "llvm.experimental.vector.compress.v16i32")
        packed = builder.call(compress, [ids, fired, ir.Constant(vi, ir.Undefined)])
        builder.store(packed, _ptr(context, builder, signature.args[2], args[2], args[4], vi), align=4)
        wide = ir.IntType(LANES)
        popcount = cgutils.get_or_insert_function(builder.module, ir.FunctionType(wide, [wide]), "llvm.ctpop.i16")
        return builder.zext(builder.call(popcount, [builder.bitcast(fired, wide)]), ir.IntType(64))

    return sig, codegen


#: ``FIRE8_LUT[m]``: the lanes set in the 8-bit mask ``m``, in increasing order (then zeros) --
#: :func:`if_fire8`'s compaction by table look-up
FIRE8_LUT = np.zeros((256, 8), np.int32)
for _m in range(256):
    _lanes = [b for b in range(8) if _m >> b & 1]
    FIRE8_LUT[_m, :len(_lanes)] = _lanes
del _m, _lanes


@intrinsic
def if_fire8(typingctx, Vn, cur, idx, lut, i, k):
    """:func:`if_fire16` for 8 neurons ``i .. i+7`` without a vector compress instruction: the
    fired lanes' mask (one ``vmovmskps`` on AVX2) selects a row of ``lut`` (:data:`FIRE8_LUT`), whose
    lane numbers plus ``i`` are stored as one 8-lane vector at ``idx[k:k+8]`` (entries past the fired
    ones are scratch, so the caller needs ``k + 8 <= len(idx)``); returns how many fired.  The same
    float32 operations as the scalar loop, and the same indices in the same order.
    """
    if not _contiguous(Vn, cur, idx) or Vn.dtype != types.float32 or cur.dtype != types.float32 \
            or idx.dtype != types.int32 or not isinstance(lut, types.Array) or lut.ndim != 2 \
            or lut.layout != "C" or lut.dtype != types.int32:
        return None
    sig = types.int64(Vn, cur, idx, lut, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        n = 8
        i8, vi = ir.IntType(8), ir.VectorType(ir.IntType(32), n)
        fired, base = _if_lanes(context, builder, signature, args, n, args[4])
        m = builder.bitcast(fired, i8)
        row = builder.mul(builder.zext(m, ir.IntType(64)), ir.Constant(ir.IntType(64), n))
        lanes = builder.load(_ptr(context, builder, signature.args[3], args[3], row, vi), align=4)
        builder.store(builder.add(base, lanes), _ptr(context, builder, signature.args[2], args[2], args[5], vi),
                      align=4)
        popcount = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i8, [i8]), "llvm.ctpop.i8")
        return builder.zext(builder.call(popcount, [m]), ir.IntType(64))

    return sig, codegen
