"""Dynamic loss scaling (Micikevicius et al., 2018), for a model whose backward runs in float16.

float16 holds magnitudes from 6.1e-5 (normal; 6.0e-8 with subnormals) to 65,504. A VAE's gradients are
small: ∂recon/∂logits is about 2(y − x)·y(1 − y)/N, 1e-5 or less for a well-fit pixel at N = 100, and they
shrink further on the way back. In float16 many of them round to 0 (underflow) and the weights they belong
to stop learning. Scaling the loss by S scales every gradient of the backward by S (the chain rule is
linear in its seed), lifting them into float16's range; the float32 gradients are divided by S again
before the optimizer sees them, so the step is the one the unscaled loss asks for:

    backward from S·∂L/∂logits  →  S·∂L/∂θ in float16  →  ∂L/∂θ = (S·∂L/∂θ) / S in float32  →  Adam

S too large overflows instead: some gradient passes 65,504 and becomes inf (or an inf − inf, NaN). So S is
found as training goes: a step whose unscaled gradients are not all finite is skipped (the weights and
Adam's moments stay as they were) and S halves; after `growth_interval` clean steps in a row S doubles.
Powers of two only: multiplying by one changes no significand, so scaling and unscaling lose nothing.

    scaler = LossScaler()
    ...backward with scaler.scale...
    if scaler.update(finite):       # False: skip this step (S has been halved)
        opt.step(grads)
"""
import math


class LossScaler:
    def __init__(self, scale=2.0 ** 16, growth_interval=2000, factor=2.0, min_scale=1.0, max_scale=2.0 ** 24):
        """scale: S to start from (a power of two); growth_interval: clean steps in a row before S doubles;
        factor: what S is multiplied by (growth) and divided by (an overflow); S stays in [min_scale,
        max_scale]."""
        if not (scale > 0 and factor > 1 and growth_interval >= 1 and 0 < min_scale <= scale <= max_scale):
            raise ValueError(f"a LossScaler needs 0 < min_scale ≤ scale ≤ max_scale, factor > 1 and growth_interval "
                             f"≥ 1, got scale {scale}, factor {factor}, growth_interval {growth_interval}, "
                             f"min_scale {min_scale}, max_scale {max_scale}")
        for name, v in (("scale", scale), ("factor", factor), ("min_scale", min_scale), ("max_scale", max_scale)):
            if math.frexp(v)[0] != 0.5:
                raise ValueError(f"a LossScaler's {name} must be a power of two (scaling by it is then exact), "
                                 f"got {v}")
        self.scale, self.growth_interval, self.factor = float(scale), int(growth_interval), float(factor)
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.clean = 0                      # finite steps in a row since S last changed
        self.skipped = 0                    # steps skipped, in all

    def update(self, finite):
        """After a backward: finite = every unscaled gradient is finite. True: take the step (S may now double,
        for the next one). False: skip it; S halves (not below min_scale)."""
        if not finite:
            self.scale = max(self.min_scale, self.scale / self.factor)
            self.clean = 0
            self.skipped += 1
            return False
        self.clean += 1
        if self.clean >= self.growth_interval:
            self.scale = min(self.max_scale, self.scale * self.factor)
            self.clean = 0
        return True

    def state(self):
        """What a checkpoint keeps, so that a resumed run scales as one that never stopped would."""
        return {"scale": self.scale, "clean": self.clean, "skipped": self.skipped,
                "growth_interval": self.growth_interval, "factor": self.factor, "min_scale": self.min_scale,
                "max_scale": self.max_scale}

    def load_state(self, state):
        self.__init__(state["scale"], state["growth_interval"], state["factor"], state["min_scale"],
                      state["max_scale"])
        self.clean, self.skipped = int(state["clean"]), int(state["skipped"])

    def __repr__(self):
        return f"LossScaler(scale={self.scale:g}, clean={self.clean}, skipped={self.skipped})"
