"""What bin/explore's page shows, without the web: a trained model's codes for some frames, and the
decoder's picture of any code.

An Explorer holds the model and a few frames (uint8, on the host). Each method answers one question
of the page in plain Python (numbers, lists, PNG images as data: URLs) that the server
(scratchvae/cli/explore.py) sends as JSON. The latent dimensions are ordered by how much of the KL
each carries, KL_d = −½ (1 + log σ²_d − μ_d² − σ²_d) averaged over the frames: the dimensions the
model uses first, the ones it leaves at the prior (KL near 0, the decoder ignores them) last.
"""
import base64
import io
import math
import threading
import time

import numpy as np

from ..ops.devices import to_numpy
from ..data.dataset import to_model_input
from ..model.losses import kl_per_dim
from ..run.pictures import decoded

LIMIT = 100.0           # |z_d| a code may have: far past anything the prior (σ = 1) or an encoder gives


class BadRequest(ValueError):
    """A question that has no answer: a code that is not latent_dim finite numbers within ±LIMIT, a frame
    that is not there."""


def short(v, n=40):
    """repr(v), cut to n characters: what a message quotes of something sent."""
    text = repr(v)
    return text if len(text) <= n else text[:n - 1] + "…"


def png_url(image):
    """uint8 (H, W, 3) → a data: URL of it as a PNG (a 64×64 frame: about 10 kB)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class Explorer:
    """model: a trained VAE (any device); frames: uint8 (F, H, W, 3) of its frame size, or None, and then
    the KL is measured on `prior_images` images decoded from the prior instead (what the encoder makes of
    the decoder's own pictures); source: words for where the frames came from."""

    def __init__(self, model, frames=None, source="", prior_images=256, batch=64):
        self.model, self.frames, self.source = model, frames, source
        self.lock = threading.Lock()        # the layers keep each pass's arrays: one pass at a time
        if frames is not None:
            images, self.kl_source = frames, f"mean over the {len(frames)} frames"
        else:
            z = np.random.default_rng(0).standard_normal((prior_images, model.latent_dim))     # (P, D)
            images = decoded(model, z, batch)                               # (P, H, W, 3) uint8
            self.kl_source = f"mean over {prior_images} images decoded from the prior (no frames given)"
        mus, logvars = zip(*(self._encode(images[i:i + batch]) for i in range(0, len(images), batch)))
        mu = np.concatenate(mus)                                        # (F, D) float64 on the host
        self.kl = kl_per_dim(mu, np.concatenate(logvars))               # (D,)
        self.order = [int(d) for d in np.argsort(-self.kl, kind="stable")]
        self.mu = mu if frames is not None else None

    def _encode(self, frames):
        """uint8 (N, H, W, 3) → (μ, log σ²), float64 (N, D) each on the host."""
        m = self.model
        mu, logvar = m.encode(to_model_input(frames, m.device, m.dtype))
        return to_numpy(mu).astype(np.float64), to_numpy(logvar).astype(np.float64)

    def info(self):
        """What the page is built from: the code's size, the dimensions by KL, and where things came from."""
        m = self.model
        return dict(latent_dim=m.latent_dim, order=self.order, kl=[float(v) for v in self.kl],
                    kl_source=self.kl_source, frames=0 if self.frames is None else len(self.frames),
                    source=self.source, size=list(m.input_shape[1:]), device=m.device, limit=LIMIT)

    def check_code(self, z):
        """z as the page sends it (a JSON list) → float64 (D,); BadRequest saying what was wrong."""
        d = self.model.latent_dim
        if not isinstance(z, list):
            raise BadRequest(f"expected z: a list of {d} numbers, got {type(z).__name__}")
        if len(z) != d:
            raise BadRequest(f"expected z: a list of {d} numbers, got {len(z)}")
        for i, v in enumerate(z):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise BadRequest(f"expected z: {d} numbers, got {type(v).__name__} {short(v)} at {i}")
            if not math.isfinite(v) or abs(v) > LIMIT:
                raise BadRequest(f"expected z: finite numbers within ±{LIMIT:g}, got {v!r} at {i}")
        return np.asarray(z, np.float64)

    def decode(self, z):
        """One code (D,) → {image (a PNG data: URL), decode_ms}: decode_ms is the decoder's time, the image
        on the host (on the GPU: the copy back waits for it), PNG encoding not counted."""
        with self.lock:
            start = time.perf_counter()
            image = decoded(self.model, z[None])[0]                     # (H, W, 3) uint8 on the host
            ms = (time.perf_counter() - start) * 1e3
        return dict(image=png_url(image), decode_ms=ms)

    def frame(self, i):
        """Frame i: {index, frame (PNG), mu (D,), image (its reconstruction from μ), decode_ms}."""
        if self.frames is None:
            raise BadRequest(f"no frame {i}: no frames were given (explore --data DIR)")
        if not 0 <= i < len(self.frames):
            raise BadRequest(f"no frame {i}: expected 0 … {len(self.frames) - 1}")
        mu = self.mu[i]
        return dict(index=i, frame=png_url(self.frames[i]), mu=[float(v) for v in mu], **self.decode(mu))

    def sample(self, seed):
        """A code drawn from the prior N(0, I) with this seed, and its picture: {seed, z, image, decode_ms}."""
        z = np.random.default_rng(seed).standard_normal(self.model.latent_dim)
        return dict(seed=seed, z=[float(v) for v in z], **self.decode(z))
