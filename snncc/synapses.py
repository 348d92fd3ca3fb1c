"""Registry of synapse operators carried by SYNAPSE/SHORTCUT edges.

Each operator is a linear map ``S`` from a source population (channels-last) to a
target population, defined by :class:`SynapseDef`:

* ``out_shape(syn, src_shape)`` -- per-sample target shape;
* ``forward(syn, x)`` -- ``S(x)`` on a batch, the analog (ANN) semantics;
* ``rescale(syn, a_in, b_out, src_shape)`` -- in place, so that afterwards
  ``S'(x) = b_out * S(a_in * x)`` with per-channel vectors ``a_in`` (source
  channels) and ``b_out`` (target channels).  This is the only way passes
  change weights for normalisation (Eq. 4-6) and compensation (Eq. 14);
* ``fan_in(syn, src_shape)`` -- synapses per target neuron (for `inspect`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from snncc import nn
from snncc.ir import Synapse


@dataclass(frozen=True)
class SynapseDef:
    out_shape: Callable
    forward: Callable
    rescale: Callable
    fan_in: Callable


SYNAPSES: dict[str, SynapseDef] = {}


def register(name: str, **fns) -> None:
    SYNAPSES[name] = SynapseDef(**fns)


_t2 = nn.ints


# -- conv --------------------------------------------------------------------
def _conv_shape(syn: Synapse, s):
    return nn.conv_shape(syn.params["weight"], syn.attrs, s, "conv synapse")


def _conv_fwd(syn: Synapse, x):
    return nn.conv2d_attrs(x, syn.params["weight"], None, syn.attrs)


def _conv_rescale(syn: Synapse, a_in, b_out, src_shape):
    w = syn.params["weight"]
    g = int(syn.attrs.get("groups", 1))
    cg, cout = w.shape[2], w.shape[3]
    og = cout // g
    a_in = np.broadcast_to(np.asarray(a_in, dtype=np.float64), (cg * g,))
    b_out = np.broadcast_to(np.asarray(b_out, dtype=np.float64), (cout,))
    # a[g*cg+ci] for each output channel's group
    a_mat = np.stack([a_in[(co // og) * cg:(co // og) * cg + cg] for co in range(cout)], axis=1)  # (cg, cout)
    syn.params["weight"] = (w * a_mat[None, None] * b_out).astype(w.dtype)


def _conv_fanin(syn, s):
    w = syn.params["weight"]
    return int(w.shape[0] * w.shape[1] * w.shape[2])


register("conv", out_shape=_conv_shape, forward=_conv_fwd, rescale=_conv_rescale, fan_in=_conv_fanin)


# -- dense -------------------------------------------------------------------
def dense_tile(syn) -> int:
    """A dense synapse's ``tile`` (``passes/compact_dense.py``): its ``F`` weight rows serve source
    neurons ``s`` by ``s mod F``, so the source has ``tile * F`` neurons; 1 = one row per neuron."""
    return int(syn.attrs.get("tile", 1))


def _dense_shape(syn, s):
    w = syn.params["weight"]
    t = dense_tile(syn)
    if t < 1 or int(np.prod(s)) != w.shape[0] * t:
        raise ValueError(f"dense synapse expects {w.shape[0] * t} inputs ({w.shape[0]} rows x tile {t}), "
                         f"source has shape {s}")
    return (w.shape[1],)


def _dense_fwd(syn, x):
    w = syn.params["weight"]
    t = dense_tile(syn)
    if t == 1:
        return x.reshape(x.shape[0], -1) @ w
    return x.reshape(x.shape[0], t, w.shape[0]).sum(axis=1) @ w


def _dense_rescale(syn, a_in, b_out, src_shape):
    w = syn.params["weight"]
    c = int(src_shape[-1])
    a_in = np.broadcast_to(np.asarray(a_in, dtype=np.float64), (c,))
    a_feat = np.tile(a_in, w.shape[0] // c)          # channels-last flatten: channel = f % C
    b_out = np.broadcast_to(np.asarray(b_out, dtype=np.float64), (w.shape[1],))
    syn.params["weight"] = (w * a_feat[:, None] * b_out[None, :]).astype(w.dtype)


register("dense", out_shape=_dense_shape, forward=_dense_fwd, rescale=_dense_rescale,
         fan_in=lambda syn, s: int(syn.params["weight"].shape[0]) * dense_tile(syn))


# -- per-channel scaled maps (avgpool, identity, subsample_pad) ---------------
def _scale_rescale_same(syn, a_in, b_out, src_shape):
    c = int(src_shape[-1])
    sc = syn.params["scale"]
    syn.params["scale"] = (sc * np.broadcast_to(a_in, (c,)) * np.broadcast_to(b_out, (c,))).astype(sc.dtype)


def _avg_shape(syn, s):
    if len(s) != 3 or syn.params["scale"].shape != (s[2],):
        raise ValueError(f"avgpool synapse with {syn.params['scale'].shape[0]} channels got input {s}")
    k, pads = _t2(syn.attrs["kernel"]), _t2(syn.attrs["pads"])
    if any(p >= k[i % 2] for i, p in enumerate(pads)):
        raise ValueError(f"avgpool synapse pads {pads} not smaller than its kernel {k} (windows of padding only)")
    oh, ow = nn.conv_out_hw(s[0], s[1], k, _t2(syn.attrs["stride"]), pads)
    return (oh, ow, s[2])


def _avg_fwd(syn, x):
    y = nn.pool2d(x, _t2(syn.attrs["kernel"]), _t2(syn.attrs["stride"]), _t2(syn.attrs["pads"]),
                  "avg", bool(syn.attrs.get("count_include_pad", False)))
    return y * syn.params["scale"]


register("avgpool", out_shape=_avg_shape, forward=_avg_fwd, rescale=_scale_rescale_same,
         fan_in=lambda syn, s: int(np.prod(syn.attrs["kernel"])))


def _id_shape(syn, s):
    if syn.params["scale"].shape != (s[-1],):
        raise ValueError(f"identity synapse with {syn.params['scale'].shape[0]} channels got input {s}")
    return tuple(s)


register("identity", out_shape=_id_shape, forward=lambda syn, x: x * syn.params["scale"],
         rescale=_scale_rescale_same, fan_in=lambda syn, s: 1)


def _sp_shape(syn, s):
    st, off, cp = _t2(syn.attrs["stride"]), _t2(syn.attrs.get("offset", (0, 0))), _t2(syn.attrs["cpad"])
    if len(s) != 3:
        raise ValueError(f"subsample_pad needs a (H, W, C) source, got {s}")
    if min(st) < 1 or min(off) < 0 or min(cp) < 0:
        raise ValueError(f"subsample_pad stride {st} must be at least 1, offset {off} and cpad {cp} at least 0")
    oh = -(-(s[0] - off[0]) // st[0])
    ow = -(-(s[1] - off[1]) // st[1])
    c = s[2] + cp[0] + cp[1]
    if oh <= 0 or ow <= 0:
        raise ValueError(f"subsample_pad offset {off} leaves no positions of a {s[0]}x{s[1]} source")
    if syn.params["scale"].shape != (c,):
        raise ValueError(f"subsample_pad scale has {syn.params['scale'].shape[0]} channels, expected {c}")
    return (oh, ow, c)


def _sp_fwd(syn, x):
    return nn.subsample_pad(x, _t2(syn.attrs["stride"]), _t2(syn.attrs.get("offset", (0, 0))),
                            _t2(syn.attrs["cpad"])) * syn.params["scale"]


def _sp_rescale(syn, a_in, b_out, src_shape):
    cp = _t2(syn.attrs["cpad"])
    c = int(src_shape[-1])
    a_out = np.zeros(c + cp[0] + cp[1])
    a_out[cp[0]:cp[0] + c] = np.broadcast_to(a_in, (c,))
    sc = syn.params["scale"]
    syn.params["scale"] = (sc * a_out * np.broadcast_to(b_out, sc.shape)).astype(sc.dtype)


register("subsample_pad", out_shape=_sp_shape, forward=_sp_fwd, rescale=_sp_rescale, fan_in=lambda syn, s: 1)


def apply(syn: Synapse, x: np.ndarray) -> np.ndarray:
    return SYNAPSES[syn.op].forward(syn, x)


def rescale(syn: Synapse, a_in, b_out, src_shape) -> None:
    SYNAPSES[syn.op].rescale(syn, np.asarray(a_in, dtype=np.float64), np.asarray(b_out, dtype=np.float64),
                             tuple(src_shape))
