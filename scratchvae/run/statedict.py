"""The model's weights under PyTorch's names and in its layouts, in a safetensors file: what bin/export writes,
and what scratchvae.load reads back, from us or from PyTorch (safetensors.torch.save_file(model.state_dict(), …)).

Two namings, each a PyTorch module's state_dict:

    scratchvae  our layer names with PyTorch's parameter names: encoder.conv1.weight … encoder.conv4.bias,
                encoder.mu.weight, encoder.logvar.weight, decoder.dense.weight, decoder.deconv1.weight …
                (the ~30-line module of docs/training.md loads it)
    ctallec     ctallec/world-models' VAE: the same, but encoder.fc_mu, encoder.fc_logsigma and decoder.fc1.
                Its encoder's second head gives log σ, ours log σ² = 2·log σ: fc_logsigma is our logvar head
                halved (weight and bias, exactly: a power of two). Its decoder has a ReLU after fc1, which
                World Models' decoder (and ours) does not: a model of ours gives other pictures in its module
                (bin/export says so), and a model of its loads as a VAE(dense_relu=True), which has that ReLU.

Layouts: nn.Conv2d's weight (out, in, kh, kw) and nn.ConvTranspose2d's (in, out, kh, kw) are ours as they are;
nn.Linear's weight is (out, in), our Dense's W (in, out) transposed. The encoder flattens its (C, H, W) features
in C order, as an NCHW tensor's view(N, -1) does, so the heads' weights need no other change.

The file's metadata (strings): "format" (FORMAT), "naming", "config" (the VAE's JSON, as checkpoints keep it),
"step" and "meta" (the checkpoint's). A file without them (written by PyTorch) is read as the World Models
architecture for 64×64 frames with the widths its tensors give.
"""
import json
import os

import numpy as np

from ..files.extras import require
from ..model.vae import DEFAULT_DECODER, DEFAULT_ENCODER, VAE
from ..ops.devices import to_numpy
from .checkpoint import Checkpoint, CheckpointError, CheckpointUnreadable, config_json

FORMAT = "scratchvae-weights-1"
PARAM = {"W": "weight", "b": "bias"}
# naming → {our layer: (its name there, the factor its weight and bias are multiplied by)}
NAMINGS = {"scratchvae": {},
           "ctallec": {"encoder.mu": ("encoder.fc_mu", 1.0), "encoder.logvar": ("encoder.fc_logsigma", 0.5),
                       "decoder.dense": ("decoder.fc1", 1.0)}}
WORLD_MODELS_SIZE = 64                  # the frames a file without our metadata is read for
FLOATS = ("F16", "F32", "F64")          # the dtypes a file's tensors may be stored as (safetensors' names)


def _safetensors():
    return require("safetensors.numpy", "export", "reading or writing safetensors files", "safetensors")


def torch_name(layer, param, naming):
    """Our (layer, param) → the tensor's name in the file, and the factor ours is multiplied by."""
    name, factor = NAMINGS[naming].get(layer, (layer, 1.0))
    return f"{name}.{PARAM[param]}", factor


def placements(model, naming):
    """For each parameter, in the model's order: (our key, its name in the file, whether the file holds it
    transposed (nn.Linear's (out, in)), the factor the file's holds it multiplied by)."""
    for key, a in model.params.items():
        layer, _, param = key.rpartition(".")
        name, factor = torch_name(layer, param, naming)
        yield key, name, param == "W" and a.ndim == 2, factor


def tensors(model, naming="scratchvae"):
    """{name in the file: host array in PyTorch's layout}, in the model's order."""
    out = {}
    for key, name, transposed, factor in placements(model, naming):
        a = to_numpy(model.params[key])
        a = a.T if transposed else a                        # nn.Linear: (out, in)
        out[name] = np.ascontiguousarray(a * a.dtype.type(factor) if factor != 1 else a)
    return out


def expected(model, naming):
    """{name in the file: its shape in PyTorch's layout}, in the model's order."""
    return {name: tuple(model.params[key].shape)[::-1 if transposed else 1]
            for key, name, transposed, _ in placements(model, naming)}


def encode(model, naming="scratchvae", step=0, meta=None):
    """The bytes of a safetensors file of the model's weights under `naming`."""
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {', '.join(NAMINGS)}, got {naming!r}")
    metadata = {"format": FORMAT, "naming": naming, "config": config_json(model), "step": str(int(step)),
                "meta": json.dumps(meta or {})}
    return _safetensors().save(tensors(model, naming), metadata=metadata)


def is_safetensors(path):
    """True when the file begins as a safetensors file does: an 8-byte little-endian header length that fits
    in the file, then the header's JSON '{'."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


def read(path, device="cpu"):
    """A Checkpoint (model, no optimizer, step, meta, path) from a safetensors file of PyTorch-layout weights.
    A file of another architecture is a CheckpointError naming the first tensor that does not fit, with both
    shapes."""
    with open(path, "rb") as f:
        return decode(f.read(), path, device)


def decode(data, path, device="cpu"):
    """read() of a file's bytes; `path` names it in messages and in the Checkpoint."""
    st = _safetensors()
    try:
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
        stored = {name: t["dtype"] for name, t in header.items() if name != "__metadata__"}
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise CheckpointUnreadable(f"{path}: not a readable safetensors file (its header: {e})") from None
    odd = next((name for name, dtype in stored.items() if dtype not in FLOATS), None)
    if odd is not None:     # bfloat16 (which NumPy lacks), integers, …
        raise CheckpointError(f"{path}: {odd} is stored as {stored[odd]}; expected F32 (or F16, F64, which NumPy "
                              "reads too): in PyTorch, save the state_dict's tensors .float()")
    try:
        arrays = st.load(data)
    except Exception as e:      # SafetensorError: a file cut short, offsets that do not fit, …
        raise CheckpointUnreadable(f"{path}: not a readable safetensors file (truncated or corrupt?): "
                                   f"{type(e).__name__}: {e}") from None
    metadata = header.get("__metadata__") or {}
    naming = metadata.get("naming") or ("ctallec" if "encoder.fc_mu.weight" in arrays else "scratchvae")
    if naming not in NAMINGS:
        raise CheckpointError(f"{path}: its metadata names the weights {naming!r}; expected one of "
                              f"{', '.join(NAMINGS)}")
    model, what = _model_for(path, arrays, metadata, naming, device)
    _check(path, arrays, expected(model, naming), what)
    for key, name, transposed, factor in placements(model, naming):       # tensors() undone
        a = arrays[name].T if transposed else arrays[name]
        model.params[key][...] = model.xp.asarray((a / factor) if factor != 1 else a)
    try:
        meta = json.loads(metadata.get("meta", "{}"))
        step = int(metadata.get("step", 0))
    except ValueError:
        meta, step = {}, 0
    return Checkpoint(model, None, step, {**(meta if isinstance(meta, dict) else {}), "naming": naming}, path)


def _model_for(path, arrays, metadata, naming, device):
    """(the VAE the file's weights fill, the words naming that architecture): the one its metadata's config
    describes, or the World Models VAE for 64×64 frames with the widths of the file's tensors."""
    if "config" in metadata:
        try:
            config = json.loads(metadata["config"])
            return VAE(**{**config, "device": device}), "the VAE its metadata describes"
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: its metadata's configuration does not build a VAE: {e}") from None

    def width(layer, axis, default):            # the outputs: its bias's size, else its weight's along `axis`
        for param, ax in (("b", 0), ("W", axis)):
            a = arrays.get(torch_name(layer, param, naming)[0])
            if a is not None and a.ndim > ax:
                return int(a.shape[ax])
        return default

    dtypes = {a.dtype for a in arrays.values()}
    conv1 = arrays.get(torch_name("encoder.conv1", "W", naming)[0])
    c = int(conv1.shape[1]) if conv1 is not None and conv1.ndim > 1 else 3
    encoder = [[width(f"encoder.conv{i}", 0, ch), k, s] for i, (ch, k, s) in enumerate(DEFAULT_ENCODER, 1)]
    decoder = [[width(f"decoder.deconv{i}", 1, ch or c), k, s] for i, (ch, k, s) in enumerate(DEFAULT_DECODER, 1)]
    config = dict(input_shape=[c, WORLD_MODELS_SIZE, WORLD_MODELS_SIZE], latent_dim=width("encoder.mu", 0, 32),
                  encoder=encoder, decoder=decoder, dense_size=width("decoder.dense", 0, 1024),
                  dense_relu=naming == "ctallec", dtype=np.float64 if dtypes == {np.dtype(np.float64)} else np.float32)
    try:
        model = VAE(**config, device=device)
    except ValueError as e:
        raise CheckpointError(f"{path}: its tensors do not make a World Models VAE: {e}") from None
    kernels = ",".join(str(k) for _, k, _ in DEFAULT_ENCODER + DEFAULT_DECODER)
    return model, (f"the World Models VAE for {WORLD_MODELS_SIZE}×{WORLD_MODELS_SIZE} frames (kernels {kernels}) "
                   "with the widths of the file's tensors")


def _check(path, arrays, want, what):
    """Every tensor `want` names is in the file with its shape, a floating dtype and finite numbers, and the file
    holds no other; else a CheckpointError on the first that is not."""
    for name, shape in want.items():
        if name not in arrays:
            raise CheckpointError(f"{path}: not this architecture: no tensor {name} (expected {shape} for {what})")
        a = arrays[name]
        if tuple(a.shape) != shape:
            raise CheckpointError(f"{path}: not this architecture: {name} is {tuple(a.shape)} in the file, "
                                  f"{shape} in {what}")
        if not np.isfinite(a).all():
            raise CheckpointError(f"{path}: {name} holds NaN or infinite values")
    extra = [name for name in arrays if name not in want]
    if extra:
        raise CheckpointError(f"{path}: not this architecture: the file has tensor {extra[0]} "
                              f"{tuple(arrays[extra[0]].shape)}, which {what} does not"
                              + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
