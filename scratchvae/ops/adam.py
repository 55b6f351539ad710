"""Adam's update of every parameter, in place (the optimizer that calls it: model/optim.py):

    m ← β₁·m + (1 − β₁)·g            v ← β₂·v + (1 − β₂)·g²
    θ ← θ − lr · m̂ / (√v̂ + eps),        m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)

On the CPU a cache-sized piece at a time, pieces spread over the cores; on the GPU one kernel over the
whole model's flat buffers."""
import numpy as np

from .cuda import Kernel
from .devices import Op
from .threads import parallel

PIECE = 1 << 18     # numbers per piece: a piece of p, g, m, v and two scratch rows (6 MB) stay in the cache


def adam_cpu(p, g, m, v, scalars, b1, b2, eps):
    """Adam's three lines on NumPy arrays, in place, a cache-sized piece at a time, pieces spread over the cores.
    scalars: this step's (lr, 1 − β₁ᵗ, 1 − β₂ᵗ), Python floats.

    Written whole (m *= b1; m += (1 − b1)·g; …) every line would stream all 4.3 M numbers of the VAE
    through memory and back, and make full-size temporaries; per piece they stay in the cache. The
    arithmetic is the same, operation for operation."""
    if not (p.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous):
        raise ValueError("Adam updates parameters in place and needs them C-contiguous")
    lr, c1, c2 = scalars
    p, g, m, v = (a.reshape(-1) for a in (p, g, m, v))          # flat views of p, m, v (g may be a copy)

    def run(pieces):
        t, u = np.empty(PIECE, p.dtype), np.empty(PIECE, p.dtype)   # scratch rows of this thread
        for i in range(pieces.start, pieces.stop):
            s = slice(i * PIECE, (i + 1) * PIECE)
            pc, gc, mc, vc = p[s], g[s], m[s], v[s]
            tc, uc = t[:pc.size], u[:pc.size]
            mc *= b1
            np.multiply(gc, 1 - b1, out=tc)
            mc += tc                                                # m ← β₁m + (1 − β₁)g
            vc *= b2
            np.multiply(gc, gc, out=tc)
            tc *= 1 - b2
            vc += tc                                                # v ← β₂v + (1 − β₂)g²
            np.divide(mc, c1, out=uc)
            uc *= lr                                                # lr·m̂
            np.divide(vc, c2, out=tc)
            np.sqrt(tc, out=tc)
            tc += eps                                               # √v̂ + eps
            uc /= tc
            pc -= uc                                                # θ ← θ − lr·m̂/(√v̂ + eps)
    parallel(run, -(-p.size // PIECE), 4 * p.size)


ADAM_PARAMS = "T g, raw T scalars, T b1, T b2, T omb1, T omb2, T eps"
# docs: adam-kernel
ADAM_BODY = """
T lr = scalars[0], c1 = scalars[1], c2 = scalars[2];   // this step's lr, 1 − β₁ᵗ, 1 − β₂ᵗ
m = b1 * m + omb1 * g;                      // m ← β₁m + (1 − β₁)g
v = b2 * v + g * g * omb2;                  // v ← β₂v + (1 − β₂)g²
p -= lr * (m / c1) / (sqrt(v / c2) + eps);  // θ ← θ − lr·m̂/(√v̂ + eps)
"""
# end docs: adam-kernel
ADAM = Kernel("adam", ADAM_PARAMS, "T p, T m, T v", ADAM_BODY)


def adam_gpu(p, g, m, v, scalars, b1, b2, eps):
    """Adam's three lines on CuPy arrays, fused in one kernel (ADAM, above): each number of p, m and v read and
    written once. scalars: a device array [lr, 1 − β₁ᵗ, 1 − β₂ᵗ] in p's dtype (a recorded step reads the
    current ones). The others are passed in p's dtype too, 1 − β₁ and 1 − β₂ rounded from double as
    adam_cpu's NumPy arithmetic rounds them."""
    t = p.dtype.type
    ADAM(g, scalars, t(b1), t(b2), t(1 - b1), t(1 - b2), t(eps), p, m, v)


adam = Op("adam", cpu=adam_cpu, gpu=adam_gpu)
