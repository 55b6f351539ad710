"""What every layer shares: its parameters, its gradients, and input checks.

The contract:
    layer.params   dict name → array (on the layer's device, in its dtype): its own, then each
                   sublayer's as "sub.name" (a layer built of others answers like one layer)
    layer.grads    dict with the same names and shapes, filled by backward
    layer.walk()   the layer and every layer inside it, depth first
    y  = layer.forward(x)    keeps what backward needs
    dx = layer.backward(dy)  fills layer.grads and returns ∂loss/∂x, except that a convolution
                             with input_grad = False (the VAE's first layer: nothing needs ∂L/∂x
                             of the images) skips that product and returns None
"""
import numpy as np

from ...ops.devices import check_dtype, device_of, get_xp, make_rng


class Layer:
    def __init__(self, dtype=np.float32, device="cpu", **sublayers):
        self.dtype = check_dtype(dtype, half=True)
        self.device = device
        self.xp = get_xp(device)
        self.own_params = {}    # name → array: this layer's own parameters (params adds the sublayers')
        self.own_grads = {}
        self.sublayers = sublayers   # name → Layer, for a layer built of others
        self.cache = None
        self.buffers = {}       # name → array kept from call to call (see _buffer)

    @property
    def params(self):
        """name → array: the layer's own parameters, then each sublayer's as "sub.name"."""
        return self._with_sublayers(self.own_params, "params")

    @property
    def grads(self):
        return self._with_sublayers(self.own_grads, "grads")

    def _with_sublayers(self, own, what):
        if not self.sublayers:
            return own
        inner = {f"{s}.{k}": v for s, layer in self.sublayers.items() for k, v in getattr(layer, what).items()}
        return {**own, **inner}

    def walk(self):
        """This layer, then every layer inside it, depth first (micrograd's parameters(), for layers)."""
        yield self
        for layer in self.sublayers.values():
            yield from layer.walk()

    def _add_param(self, name, shape, bound, rng):
        """A parameter drawn from U(−bound, bound) on the host, then moved to the device."""
        value = make_rng(rng).uniform(-bound, bound, size=shape).astype(self.dtype)
        self.own_params[name] = self.xp.asarray(value)
        self.own_grads[name] = self.xp.zeros_like(self.own_params[name])

    def _check(self, x, rank, what):
        """Rank, device and dtype of an input: a ValueError naming what was expected and what came."""
        name = type(self).__name__
        shape = getattr(x, "shape", None)
        if shape is None or not hasattr(x, "dtype"):
            raise ValueError(f"{name} expects an array of shape {what}, got {type(x).__name__}")
        if len(shape) != rank:
            raise ValueError(f"{name} expects a {rank}-d input of shape {what}, got shape {tuple(shape)}")
        if device_of(x) != self.device:
            raise ValueError(f"{name} lives on {self.device}, got an array on {device_of(x)}")
        if x.dtype != self.dtype:
            raise ValueError(f"{name} expects dtype {self.dtype}, got {x.dtype}")

    def _buffer(self, name, shape):
        """An uninitialised array of `shape` in the layer's dtype, the same one on every call while
        the shape stays. For big temporaries: tens of MB allocated anew on every step cost the
        operating system's page faults (it zeroes every page) each time; reused, they cost nothing."""
        buf = self.buffers.get(name)
        if buf is None or buf.shape != tuple(shape):
            buf = self.buffers[name] = self.xp.empty(shape, dtype=self.dtype)
        return buf

    def _need_cache(self):
        if self.cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self.cache

    def __repr__(self):
        shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.params.items())
        return f"{type(self).__name__}({shapes})"
