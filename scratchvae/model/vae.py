"""The World Models VAE, assembled from the hand-written layers, with a hand-written backward.

    x ─ encoder ─┬─ mu ──────┐
    (N,C,H,W)    └─ logvar ──┴─ z = mu + exp(logvar/2)·eps ─ decoder ─ logits ─ σ ─ y
                                                                              (N,C,H,W)

The default is the World Models architecture: four 4×4 stride-2 convolutions
(32, 64, 128, 256 channels, ReLU), dense heads for mu and logvar, a linear dense
layer to 1024 numbers seen as a 1024×1×1 image, and four stride-2 transposed
convolutions (kernels 5, 5, 6, 6; 128, 64, 32, C channels; ReLU, then a sigmoid).

The model is two lists of layers, run in order forwards and in reverse backwards (``forward``,
``backward``); for the default:

    encoder  conv1 ReLU conv2 ReLU conv3 ReLU conv4 ReLU Flatten Heads(mu, logvar)
    decoder  DenseThenDeconv(dense, deconv1) ReLU deconv2 ReLU deconv3 ReLU deconv4

(the dense layer and a deconv1 that reads a 1×1 image are two linear maps in a row, computed as
one; otherwise dense, Reshape and deconv1 stand in its place, and a Crop2D ends the decoder where
the decoded image is larger than the input; with dense_relu, a ReLU follows dense, as in ctallec/world-models'
PyTorch decoder, so that its trained weights load: run/statedict.py). Between the two lists the loss draws z by
reparameterization and adds the KL; after the decoder, a sigmoid and the reconstruction term.
``model.layers`` names the layers with parameters (encoder.conv1 … decoder.deconv4), as
checkpoints and gradients name them.

Other input sizes: the encoder's shapes are computed; the decoder starts from a
1024×h0×w0 block, h0 and w0 the smallest sizes whose decoded image covers H×W
(1×1 for 64×64, 1×2 for 60×80), and a centred crop gives back exactly H×W.
"""
import numpy as np

from . import losses
from ..ops.devices import check_dtype, device_of, get_xp, named_views
from ..ops.im2col import batch_last
from .scaler import LossScaler
from .layers import (Conv2D, ConvTranspose2D, Crop2D, Dense, DenseThenDeconv, FastConv2D, FastConvTranspose2D,
                     Flatten, Heads, ReLU, Reshape, Sigmoid)
from ..ops.sizes import conv_out_size, conv_transpose_out_size
from ..ops.uploads import Uploader

DEFAULT_ENCODER = ((32, 4, 2), (64, 4, 2), (128, 4, 2), (256, 4, 2))    # (channels, kernel, stride)
DEFAULT_DECODER = ((128, 5, 2), (64, 5, 2), (32, 6, 2), (None, 6, 2))  # None: the image's channels


def encoder_min_size(encoder):
    """The smallest height (or width) every encoder convolution fits in."""
    size = 1
    while True:
        h, ok = size, True
        for _, k, s in encoder:
            if h < k:
                ok = False
                break
            h = conv_out_size(h, k, s)
        if ok:
            return size
        size += 1


def decoder_start(size, decoder):
    """The smallest seed size h0 whose decoded size covers `size`, and that decoded size."""
    h0 = 1
    while True:
        h = h0
        for _, k, s in decoder:
            h = conv_transpose_out_size(h, k, s)
        if h >= size:
            return h0, h
        h0 += 1


def forward(layers, a):
    """Run a through the layers in order: each layer's output is the next one's input."""
    for layer in layers:
        a = layer.forward(a)
    return a


def backward(layers, da):
    """The gradient da at the layers' output, taken back through them in reverse order (each filling its
    grads): the gradient at their input."""
    for layer in reversed(layers):
        da = layer.backward(da)
    return da


def build_encoder(c, h, w, encoder, latent_dim, conv, init, kw):
    """The encoder as a list of layers, (N, C, H, W) → (mu, logvar): conv → ReLU for each (channels, kernel,
    stride), flatten, and two dense heads reading the same features. Also its parametered layers by name."""
    named, layers = {}, []
    for i, (co, k, s) in enumerate(encoder, 1):
        layer = named[f"encoder.conv{i}"] = conv(c, co, k, s, rng=init, **kw)
        layers += [layer, ReLU(inplace=True, **kw)]                 # in place: the ReLU owns the conv's new output
        c, (h, w) = co, layer.output_shape(h, w)
    layers[0].input_grad = False                                    # nothing needs ∂L/∂x of the images
    mu = named["encoder.mu"] = Dense(c * h * w, latent_dim, rng=init, **kw)
    logvar = named["encoder.logvar"] = Dense(c * h * w, latent_dim, rng=init, **kw)
    return layers + [Flatten(**kw), Heads(mu, logvar)], named


def build_decoder(c, h, w, decoder, latent_dim, dense_size, dense_relu, deconv, join, init, kw):
    """The decoder as a list of layers, z (N, D) → logits (N, C, H, W): dense (then a ReLU, with dense_relu) →
    (dense_size, h0, w0), then a transposed convolution for each (channels, kernel, stride), ReLU between them,
    and a centred crop to H×W where the decoded image is larger. join: a dense layer and a deconv1 that reads a
    1×1 image are two linear maps in a row, computed as one (DenseThenDeconv). Also its parametered layers by
    name."""
    (h0, dh), (w0, dw) = decoder_start(h, decoder), decoder_start(w, decoder)
    dense = Dense(latent_dim, dense_size * h0 * w0, rng=init, **kw)
    named, layers, ch = {"decoder.dense": dense}, [dense], dense_size
    if dense_relu:                                                  # (then dense and deconv1 are not one linear map)
        layers.append(ReLU(inplace=True, **kw))
    layers.append(Reshape((dense_size, h0, w0), **kw))
    for i, (co, k, s) in enumerate(decoder, 1):
        layer = named[f"decoder.deconv{i}"] = deconv(ch, co, k, s, rng=init, **kw)
        layers += [layer, ReLU(inplace=True, **kw)]
        ch = co
    layers.pop()                                                    # the last gives logits: the sigmoid is the loss's
    if join and (h0, w0) == (1, 1) and not dense_relu:
        layers[:3] = [DenseThenDeconv(dense, named["decoder.deconv1"])]
    if (dh, dw) != (h, w):
        layers.append(Crop2D(h, w, **kw))
    return layers, named


class VAE:
    def __init__(self, input_shape=(3, 64, 64), latent_dim=32, kl_tolerance=0.5, beta=1.0, recon="mse",
                 encoder=DEFAULT_ENCODER, decoder=DEFAULT_DECODER, dense_size=1024,
                 dense_relu=False, dtype=np.float32, seed=0, device="cpu", fast=True, compute_dtype=None):
        """dense_relu: a ReLU after the decoder's dense layer, as ctallec/world-models' PyTorch decoder has (World
        Models' own has none; bin/export's notes say what changes). fast: build the convolutions from
        FastConv2D/FastConvTranspose2D (the default, same results up to the order of the sums) or, with False, from
        the plain im2col layers the docs teach first. compute_dtype: float16 for mixed precision (with dtype
        float32): the layers compute in float16 on a float16 copy of the float32 weights, the loss, the latent
        and the optimizer's weights stay float32, and the backward is scaled by a LossScaler (docs/precision.md);
        None: the layers compute in dtype."""
        c, h, w = (int(v) for v in input_shape)
        if recon not in losses.RECON_KINDS:
            raise ValueError(f"recon must be one of {losses.RECON_KINDS}, got {recon!r}")
        if latent_dim < 1 or kl_tolerance < 0 or beta < 0:
            raise ValueError(f"need latent_dim ≥ 1, kl_tolerance ≥ 0 and beta ≥ 0, got "
                             f"{latent_dim}, {kl_tolerance}, {beta}")
        encoder = tuple(tuple(e) for e in encoder)
        decoder = tuple((c if ch is None else ch, k, s) for ch, k, s in decoder)
        if decoder[-1][0] != c:
            raise ValueError(f"the decoder's last layer must give the image's {c} channels, got {decoder[-1][0]}")
        hmin = encoder_min_size(encoder)
        if h < hmin or w < hmin:
            raise ValueError(f"input {c}×{h}×{w} is too small for the encoder: height and width must be at least {hmin}")
        self.config = dict(input_shape=[c, h, w], latent_dim=int(latent_dim), kl_tolerance=float(kl_tolerance),
                           beta=float(beta), recon=recon, encoder=[list(e) for e in encoder],
                           decoder=[list(d) for d in decoder], dense_size=int(dense_size),
                           **({"dense_relu": True} if dense_relu else {}), dtype=np.dtype(dtype).name, seed=seed)
        self.input_shape = (c, h, w)
        self.latent_dim, self.kl_tolerance, self.beta = int(latent_dim), float(kl_tolerance), float(beta)
        self.recon_kind = recon                                     # "mse" or "bernoulli"
        self.dtype = check_dtype(dtype)
        self.compute_dtype = self.dtype if compute_dtype is None else check_dtype(compute_dtype, half=True)
        self.mixed = self.compute_dtype != self.dtype               # float16 layers, float32 weights and loss
        if self.mixed and (self.compute_dtype != np.float16 or self.dtype != np.float32):
            raise ValueError(f"mixed precision computes in float16 on float32 weights: compute_dtype float16 needs "
                             f"dtype float32, got compute_dtype {self.compute_dtype} with dtype {self.dtype}")
        if self.mixed:
            self.config["compute_dtype"] = "float16"
        self.scaler = LossScaler() if self.mixed else None         # the backward's scale (model/scaler.py)
        self.device = device
        self.xp = get_xp(device)
        init_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
        init = np.random.default_rng(init_seed)                     # draws the parameters, layer by layer
        self.rng = np.random.default_rng(noise_seed)                # draws eps; saved in checkpoints
        self._upload = Uploader() if device == "gpu" else None     # GPU: eps's copies (uploads.py)
        kw = dict(dtype=self.compute_dtype, device=device)
        conv, deconv = (FastConv2D, FastConvTranspose2D) if fast else (Conv2D, ConvTranspose2D)
        self.encoder, enc_named = build_encoder(c, h, w, encoder, latent_dim, conv, init, kw)
        self.decoder, dec_named = build_decoder(c, h, w, decoder, latent_dim, dense_size, dense_relu, deconv, fast,
                                                init, kw)
        self.sigmoid = Sigmoid(dtype=self.dtype, device=device)    # (the pictures' sigmoid: in the loss's dtype)
        self.layers = {**enc_named, **dec_named}                    # the layers with parameters, by name
        self.flat_params, self.flat_grads = self.flatten()
        shapes = {f"{name}.{p}": a.shape for name, layer in self.layers.items() for p, a in layer.params.items()}
        self.params = named_views(self.flat_params, shapes)
        # the gradients named like params: views of flat_grads, which every backward writes into (grads)
        self._grads = named_views(self.flat_grads, shapes)
        self.cache = None
        self._backward_done = False                                 # grads hold nothing until a backward

    def flatten(self):
        """Move every parameter into one flat buffer and every gradient into another, in the order of
        model.params; the layers keep views of them (and write their gradients into those). An optimizer
        then updates the whole model in one pass (Adam: one kernel on the GPU). Returns the two buffers.

        Mixed precision: the layers' buffers are float16 (flat_compute, flat_compute_grads), and the two
        returned are float32 twins: the weights the optimizer updates and saves, and the unscaled gradients."""
        sizes = [a.size for layer in self.layers.values() for a in layer.params.values()]
        flat_p = self.xp.empty(sum(sizes), dtype=self.compute_dtype)
        flat_g = self.xp.zeros(sum(sizes), dtype=self.compute_dtype)
        off = 0
        for layer in self.layers.values():
            for k, a in layer.params.items():
                view = flat_p[off:off + a.size].reshape(a.shape)
                view[...] = a
                layer.own_params[k], layer.own_grads[k] = view, flat_g[off:off + a.size].reshape(a.shape)
                off += a.size
        self.flat_compute, self.flat_compute_grads = flat_p, flat_g
        if self.mixed:                                              # the float32 weights: the float16 ones, exactly
            return flat_p.astype(self.dtype), self.xp.zeros(flat_p.size, dtype=self.dtype)
        return flat_p, flat_g

    def sync_compute(self):
        """After the weights changed (an optimizer step, a checkpoint loaded into them): the float16 copy the
        layers compute with, rounded from them. Nothing to do unless mixed."""
        if self.mixed:
            self.flat_compute[...] = self.flat_params                # round to nearest float16

    def full_precision(self):
        """A model of this one's configuration computing in its dtype throughout, with its weights and its
        generator's state: for tools that read the layers' weights (the ONNX export), or to compare."""
        if not self.mixed:
            return self
        config = {k: v for k, v in self.config.items() if k != "compute_dtype"}
        twin = VAE(**config, device=self.device)
        twin.flat_params[...] = self.flat_params
        twin.rng.bit_generator.state = self.rng.bit_generator.state
        return twin

    @property
    def grads(self):
        """Gradients named like params (views of flat_grads), as the last backward (or zero_grads) left them."""
        if not self._backward_done:
            raise RuntimeError("VAE.grads: no backward() has run yet, so there are no gradients; "
                               "call loss(x) and backward() first")
        return self._grads

    def zero_grads(self):
        """Every gradient 0: a step that saw no images (a rank's empty shard) adds nothing to a sum."""
        self.flat_grads[...] = 0
        self.flat_compute_grads[...] = 0
        self._backward_done = True

    @property
    def above_floor(self):
        """(N,) bools: the images of the last loss() whose KL is above the free-bits floor, the only ones
        its KL gradient reaches (and where the loss has its kinks: a gradient check watches them)."""
        if self.cache is None:
            raise RuntimeError("VAE.above_floor: no loss() to report on (none yet, or its backward() ran)")
        return self.cache[-1]

    def walk(self):
        """Every layer of the model, those inside a layer built of others too (Layer.walk)."""
        for top in self.encoder + self.decoder:
            yield from top.walk()

    def num_params(self):
        return sum(int(a.size) for a in self.params.values())

    def _check_images(self, x):
        c, h, w = self.input_shape
        shape = getattr(x, "shape", None)
        if shape is None or tuple(shape[1:]) != (c, h, w) or len(shape) != 4:
            raise ValueError(f"VAE expects images of shape (N, {c}, {h}, {w}), got "
                             f"{tuple(shape) if shape is not None else type(x).__name__}")
        if shape[0] == 0:
            raise ValueError(f"VAE expects at least one image, got an empty batch of shape {tuple(shape)}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"VAE expects {self.dtype} images in [0, 1], got {x.dtype}: convert them, e.g. "
                             f"x.astype(np.{self.dtype}) / 255")
        if x.dtype != self.dtype:
            raise ValueError(f"VAE expects dtype {self.dtype}, got {x.dtype}")
        if device_of(x) != self.device:
            raise ValueError(f"VAE lives on {self.device}, got an array on {device_of(x)}")
        if self.device == "cpu":                                    # on the GPU these would wait for the device
            lo, hi = x.min(), x.max()                               # NaN or ±inf anywhere reaches one of them
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ValueError("VAE input holds NaN or infinite values")
            if lo < 0 or hi > 1:
                raise ValueError(f"VAE expects images in [0, 1], got values from {lo:g} to {hi:g}"
                                 + (": divide by 255" if hi > 1 and hi <= 255 and lo >= 0 else ""))

    # ---- public ---------------------------------------------------------------------------------
    def encode(self, x):
        """Images (N, C, H, W) in [0, 1] → (mu, logvar), each (N, latent_dim)."""
        self._check_images(x)
        mu, logvar = forward(self.encoder, self._compute(batch_last(x)))
        return self._full(mu), self._full(logvar)

    def decode(self, z):
        """Latents (N, latent_dim) → images (N, C, H, W) in (0, 1), C-contiguous."""
        return self.xp.ascontiguousarray(self.sigmoid.forward(self.decode_logits(z)))

    def decode_logits(self, z):
        """Latents (N, latent_dim) → the decoder's logits (N, C, H, W), before the sigmoid (what a likelihood reads)."""
        shape, dtype = tuple(getattr(z, "shape", ())), getattr(z, "dtype", None)
        if len(shape) != 2 or shape[1] != self.latent_dim or shape[0] == 0:
            raise ValueError(f"VAE.decode expects latents of shape (N ≥ 1, {self.latent_dim}), got "
                             f"{shape if dtype is not None else type(z).__name__}")
        if dtype != self.dtype or device_of(z) != self.device:
            raise ValueError(f"VAE.decode expects {self.dtype} latents on {self.device} (the model's), got "
                             f"{dtype} on {device_of(z)}")
        return self._full(forward(self.decoder, self._compute(z)))

    def reconstruct(self, x):
        """Decode each image's mean latent."""
        return self.decode(self.encode(x)[0])

    def sample_eps(self, n):
        """Standard normal noise (n, latent_dim), drawn on the host from the model's generator (on the GPU its
        copy is queued, not awaited: scratchvae/ops/uploads.py)."""
        eps = self.rng.standard_normal((n, self.latent_dim), dtype=self.dtype)   # (N, D) on the host
        return eps if self._upload is None else self._upload(eps)

    def loss(self, x, eps=None):
        """Forward pass and loss; keeps what backward needs. Returns 0-d arrays on the model's device:
        loss = recon + β·kl, recon, kl (the floored KL the loss uses) and kl_raw (its unfloored mean)."""
        self._check_images(x)
        n = x.shape[0]
        if eps is None:                     # drawn on the host; on the GPU its upload is queued, not awaited
            eps = self.sample_eps(n)                                # (N, D)
        elif tuple(getattr(eps, "shape", ())) != (n, self.latent_dim) or device_of(eps) != self.device:
            raise ValueError(f"eps must be an array of shape ({n}, {self.latent_dim}) on {self.device}, got "
                             f"{tuple(getattr(eps, 'shape', ()))} on {device_of(eps)}")
        x = batch_last(x)                                           # stored (C, H, W, N), as the layers store theirs
        mu, logvar = forward(self.encoder, self._compute(x))        # (N, D), (N, D)
        mu, logvar = self._full(mu), self._full(logvar)             # (mixed: the latent in float32)
        z, std, kl_n = losses.reparameterize(mu, logvar, eps)       # z = mu + σ·eps; each image's KL (N,)
        logits = self._full(forward(self.decoder, self._compute(z)))   # (N, C, H, W); the loss in float32
        recon, dlogits = losses.RECON[self.recon_kind](logits, x)  # dlogits = ∂recon/∂logits (y = σ(logits) inside)
        terms, active = losses.loss_terms(recon, kl_n, self.kl_tolerance * self.latent_dim, self.beta)
        self.cache = (n, mu, logvar, std, eps, dlogits, active)
        return terms                                                # loss, recon, kl (free bits), kl_raw

    def backward(self):
        """Fill model.grads with ∂loss/∂θ for the last loss() call."""
        if self.cache is None:
            raise RuntimeError("VAE.backward: the last loss() was already used by a backward(); call loss() again"
                               if self._backward_done else "VAE.backward called before any loss(); call loss() first")
        n, mu, logvar, std, eps, dlogits, active = self.cache
        s = self.loss_scale                                         # 1 (mixed precision: the backward of s·loss)
        dz = backward(self.decoder, self._compute(dlogits, s))      # (N, D)
        dmu, dlogvar = losses.latent_backward(self._full(dz), mu, logvar, eps, std, active,
                                              s * self.beta / n)    # + β/N·∂kl where active
        backward(self.encoder, (self._compute(dmu), self._compute(dlogvar)))   # the heads' input: both summed
        self._unscale(s)                                            # (mixed: ∂loss/∂θ = (s·∂loss/∂θ)/s, float32)
        self.cache, self._backward_done = None, True

    # ---- mixed precision (docs/precision.md): where the float16 layers meet the float32 rest ----------
    @property
    def loss_scale(self):
        """The factor the backward starts from: the scaler's S for a mixed model, else 1."""
        return self.scaler.scale if self.mixed else 1

    def _compute(self, a, scale=1):
        """a (times scale) in the layers' dtype: float16 for a mixed model (a new array, in a's layout), else a.
        Past 65,504 a number becomes inf: the sign of a scale too large, which the scaler sees after."""
        if not self.mixed:
            return a
        with np.errstate(over="ignore"):
            return (a * a.dtype.type(scale) if scale != 1 else a).astype(self.compute_dtype)

    def _unscale(self, s):
        """A mixed model's float32 gradients from the layers' float16 ones of s·loss (s a power of two: dividing
        by it is exact). An inf or NaN stays one: optimizer_step (run/step.py) skips the step then."""
        if self.mixed:
            with np.errstate(over="ignore", invalid="ignore"):
                self.flat_grads[...] = self.flat_compute_grads
                self.flat_grads *= 1 / s

    def _full(self, a):
        """a layer's output in the model's own dtype: float32 for a mixed model, else a as it is."""
        return a.astype(self.dtype) if self.mixed else a

    def __repr__(self):
        c, h, w = self.input_shape
        prec = f"{self.dtype} weights, {self.compute_dtype} layers" if self.mixed else f"{self.dtype}"
        return f"VAE({c}×{h}×{w} → {self.latent_dim}, {self.num_params():,} parameters, {prec}, {self.device})"
