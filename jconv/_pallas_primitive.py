"""method='pallas' as a JAX primitive, so that it has every transformation lax's conv has.

A pallas_call is opaque to JAX's autodiff, so the kernels are wrapped the way
lax wraps its own convolution: one primitive, `conv_p`, computing one of the
three products of the bilinear form T(x, w, dy) = <dy, conv(x, w)> (see
jconv/_pallas_geometry.py), each of them bilinear, with

- a JVP rule: the product of the tangent of one operand with the other
  operand, summed (forward mode: jax.jvp, jacfwd);
- a transpose rule for each operand: another of the three products (the
  forward pass transposes to the input gradient and the kernel gradient, and
  those to each other and back), so reverse mode is JVP then transpose, as for
  lax, and so is jax.linear_transpose; any order of derivatives works;
- a batching rule that folds a vmapped axis into the batch (when the kernel
  is not vmapped) or into the groups, as lax's convolution does;
- a lowering chosen per platform when the computation is lowered: the Triton
  kernels on CUDA, the same kernels in Pallas's interpret mode elsewhere.

Why not custom_jvp or custom_vjp around pallas_call: a custom VJP has no
forward mode; a custom JVP whose tangent calls the kernels needs those
linear calls transposed, and neither a custom VJP on each linear map (JAX
cannot transpose a custom_vjp call) nor jax.custom_derivatives.linear_call
(no batching rule) nor jax.custom_transpose (gone from jax 0.10) composes with
all of jvp, grad, vmap and linear_transpose. A primitive does, through
jax.extend.core.Primitive and the rule tables of jax.interpreters.{ad,
batching, mlir}, as in JAX's own guide to defining primitives.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir
from jax.sharding import NamedSharding, PartitionSpec

from jconv._pallas_geometry import ConvGeometry
from jconv._pallas_triton import forward, input_grad, kernel_grad
from jconv._pallas_tuning import config_for
from jconv._typing import Array

conv_p = Primitive("jconv_pallas_conv")


def _varying_axes(x: Array) -> frozenset:
    """shard_map's varying manual axes of x (empty outside shard_map)."""
    return jax.typeof(x).mat.varying


def conv_product(
    a: Array,
    b: Array,
    bias: Array | None = None,
    *,
    product: str,
    geometry: ConvGeometry,
    out_dtype: Any,
    precision: Any = None,
) -> Array:
    """One product of the convolution `geometry`, NHWC / HWIO throughout.

    product 'y': a = x (N, H, W, C), b = w (kh, kw, C/groups, O), optional bias (O,)
    -> y (N, mh, mw, O); 'x': a = dy, b = w -> dx (N, H, W, C); 'w': a = x,
    b = dy -> dw (kh, kw, C/groups, O). The result is in out_dtype.

    Operands varying over different shard_map axes are made to vary alike first
    (under jax.grad shard_map then sums the invariant one's cotangent).
    """
    operands = [a, b] if bias is None else [a, b, bias]
    axes = frozenset().union(*map(_varying_axes, operands))
    if axes:
        operands = [
            jax.lax.pcast(v, tuple(axes - _varying_axes(v)), to="varying")
            if axes - _varying_axes(v)
            else v
            for v in operands
        ]
    return conv_p.bind(
        *operands,
        product=product,
        geometry=geometry,
        out_dtype=np.dtype(out_dtype),
        precision=precision,
    )


def _abstract_eval(a, b, *bias, product, geometry, out_dtype, precision):
    del b, bias, precision
    # the images' own type (batch sharding, shard_map's varying axes) carries over ...
    new = dict(shape=geometry.out_shape(product), dtype=out_dtype, weak_type=False)
    if product == "w":  # ... but a sum over the batch is not split like the images are
        new["sharding"] = NamedSharding(a.sharding.mesh, PartitionSpec(None, None, None, None))
    return a.update(**new)


conv_p.def_abstract_eval(_abstract_eval)


@functools.lru_cache(maxsize=256)
def _jitted(product, geometry, out_dtype, precision):
    params = dict(product=product, geometry=geometry, out_dtype=out_dtype, precision=precision)
    return jax.jit(lambda *args: conv_p.bind(*args, **params))


def _impl(*args, **params):
    """Outside jit (jax.linear_transpose, eager AD): compile the primitive alone."""
    return _jitted(**params)(*args)


conv_p.def_impl(_impl)


def _run_kernels(*args, product, geometry, out_dtype, precision, interpret):
    a, b, *bias = args
    dtype = jnp.result_type(a.dtype, b.dtype)
    kw = dict(
        config=config_for(product, geometry, dtype),
        out_dtype=out_dtype,
        precision=precision,
        interpret=interpret,
    )
    if product == "y":
        return forward(a, b, bias[0] if bias else None, geometry, **kw)
    if product == "x":
        return input_grad(a, b, geometry, **kw)
    return kernel_grad(a, b, geometry, **kw)


def _invariant(aval: Any) -> Any:
    """aval with no shard_map varying axes."""
    mat = aval.manual_axis_type
    if not mat.varying:
        return aval
    return aval.update(manual_axis_type=mat.update(varying=frozenset()))


def _lower_interpreted(ctx, *args, **params):
    """The kernels in Pallas's interpret mode, on any platform.

    Pallas's interpreter loses shard_map's varying axes in its loop carries
    (jax 0.10 and 0.11); lowering emits one device's program, where they no
    longer matter, so the kernels are traced here as if nothing varied.
    """
    ctx = ctx.replace(
        avals_in=[_invariant(a) for a in ctx.avals_in],
        avals_out=[_invariant(a) for a in ctx.avals_out],
    )
    run = functools.partial(_run_kernels, interpret=True)
    return mlir.lower_fun(run, multiple_results=False)(ctx, *args, **params)


# Per platform, at lowering time: Triton on CUDA; Pallas's interpreter elsewhere.
mlir.register_lowering(conv_p, _lower_interpreted)
mlir.register_lowering(
    conv_p,
    mlir.lower_fun(functools.partial(_run_kernels, interpret=False), multiple_results=False),
    platform="cuda",
)


def _is_zero(t: Any) -> bool:
    return type(t) is ad.Zero


def _jvp(primals, tangents, **params):
    a, b, *bias = primals
    ta, tb, *tbias = tangents
    out = conv_p.bind(*primals, **params)
    linear = dict(params)
    terms = []
    if not _is_zero(ta):
        terms.append(conv_product(ta, b, **linear))
    if not _is_zero(tb):
        terms.append(conv_product(a, tb, **linear))
    if bias and not _is_zero(tbias[0]):
        terms.append(jnp.broadcast_to(tbias[0].astype(out.dtype), out.shape))
    if not terms:
        return out, ad.Zero(jax.typeof(out).to_tangent_aval())
    return out, functools.reduce(jnp.add, terms)


ad.primitive_jvps[conv_p] = _jvp


# The transposes: for each product and each operand, which product gives its cotangent
# and from which arguments. (ct is the cotangent of the product's result.)
_TRANSPOSES = {
    ("y", 0): ("x", lambda ct, a, b: (ct, b)),  # dx = X(dy, w)
    ("y", 1): ("w", lambda ct, a, b: (a, ct)),  # dw = W(x, dy)
    ("x", 0): ("y", lambda ct, a, b: (ct, b)),  # d dy = Y(ct, w)
    ("x", 1): ("w", lambda ct, a, b: (ct, a)),  # dw = W(ct, dy)
    ("w", 0): ("x", lambda ct, a, b: (b, ct)),  # dx = X(dy, ct)
    ("w", 1): ("y", lambda ct, a, b: (a, ct)),  # d dy = Y(x, ct)
}


def _transpose(ct, a, b, *bias, product, geometry, out_dtype, precision):
    if bias:
        raise NotImplementedError(
            "method='pallas': a convolution with a bias is affine, not linear, in x and kernel; "
            "it has no transpose"
        )
    if _is_zero(ct):
        return [None, None]
    cts: list[Any] = [None, None]
    for i, operand in enumerate((a, b)):
        if ad.is_undefined_primal(operand):
            other, args = _TRANSPOSES[(product, i)]
            cts[i] = conv_product(
                *args(ct, a, b),
                product=other,
                geometry=geometry,
                out_dtype=operand.aval.dtype,
                precision=precision,
            )
    return cts


ad.primitive_transposes[conv_p] = _transpose


# --- vmap: fold the mapped axis into the batch, or into the groups ---


def _image_to_channels(v: Array, size: int) -> Array:
    """(B, N, h, w, C) -> (N, h, w, B * C): B more groups."""
    _, n, h, w, c = v.shape
    return jnp.moveaxis(v, 0, 3).reshape(n, h, w, size * c)


def _channels_to_image(v: Array, size: int) -> Array:
    n, h, w, bc = v.shape
    return jnp.moveaxis(v.reshape(n, h, w, size, bc // size), 3, 0)


def _batch(args, dims, *, product, geometry, out_dtype, precision):
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    params = dict(out_dtype=out_dtype, precision=precision)
    a, b, *bias = args
    da, db, *dbias = dims
    kernel_mapped = product != "w" and db is not None
    if product != "w" and not kernel_mapped and not (bias and dbias[0] is not None):
        # only the image is mapped: the mapped axis joins the batch
        a = jnp.moveaxis(a, da, 0)
        a = a.reshape(size * a.shape[1], *a.shape[2:])
        geo = dataclasses.replace(geometry, n=size * geometry.n)
        out = conv_product(a, b, *bias, product=product, geometry=geo, **params)
        return out.reshape(size, geometry.n, *out.shape[1:]), 0
    # anything else: every operand mapped (broadcast if need be), B times the groups
    args = [
        jnp.broadcast_to(v, (size, *v.shape)) if d is None else jnp.moveaxis(v, d, 0)
        for v, d in zip(args, dims)
    ]
    a, b, *bias = args
    geo = dataclasses.replace(
        geometry, c=size * geometry.c, o=size * geometry.o, groups=size * geometry.groups
    )
    if product == "w":  # a = x, b = dy: images; the result is a kernel
        a, b = _image_to_channels(a, size), _image_to_channels(b, size)
    else:  # a = x or dy: an image; b = w: (B, kh, kw, cg, O) -> (kh, kw, cg, B * O)
        a = _image_to_channels(a, size)
        kh, kw, cg, o = b.shape[1:]
        b = jnp.moveaxis(b, 0, 3).reshape(kh, kw, cg, size * o)
        bias = [v.reshape(-1) for v in bias]
    out = conv_product(a, b, *bias, product=product, geometry=geo, **params)
    if product == "w":
        kh, kw, cg, bo = out.shape
        return jnp.moveaxis(out.reshape(kh, kw, cg, size, bo // size), 3, 0), 0
    return _channels_to_image(out, size), 0


batching.primitive_batchers[conv_p] = _batch
