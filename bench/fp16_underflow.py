"""Why mixed precision scales the loss: the World Models VAE's gradients at its first step, computed by a float16
model at several loss scales, against its float32 twin (the same weights).

    python bench/fp16_underflow.py

Per scale S: how many gradients are exactly 0 in float16 where float32 has a number (they fell under float16's
smallest, 6e-8, on the way back: underflow), how many are not finite (some number passed 65,504: overflow),
and the float32 gradients' largest and smallest nonzero magnitude, whose ratio says whether one scale can
keep them all.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from scratchvae import VAE  # noqa: E402

rng = np.random.default_rng(1)
x = rng.random((8, 3, 64, 64)).astype(np.float32)
eps = rng.standard_normal((8, 32)).astype(np.float32)
print("the World Models VAE (seed 0) at its first step, a batch of 8 random images (rng 1):")
print(f"{'scale':>6}{'0 in float16, not in float32':>30}{'not finite':>12}{'of':>12}{'largest |g| (float32)':>23}"
      f"{'smallest nonzero |g|':>22}")
for S in (1, 2 ** 6, 2 ** 10, 2 ** 14):
    model = VAE(compute_dtype=np.float16, seed=0)
    model.scaler.scale = S
    twin = model.full_precision()
    for m in (model, twin):
        with np.errstate(all="ignore"):
            m.loss(x, eps)
            m.backward()
    lost = sum(int(np.sum((model.grads[k] == 0) & (twin.grads[k] != 0))) for k in model.grads)
    bad = int(np.sum(~np.isfinite(model.flat_grads)))
    g = np.abs(twin.flat_grads)
    print(f"{S:>6}{lost:>30,}{bad:>12,}{model.num_params():>12,}{g.max():>23.3g}{g[g > 0].min():>22.3g}")
