"""A trained model in the formats other code reads: safetensors weights in PyTorch's names and layouts
(run/statedict.py) and two ONNX graphs (use/onnxgraph.py). Each file is checked after it is made, before
it is put in place: the weights read back equal to the bit, the graphs run by onnxruntime against our own
forward pass.

    scratchvae.export("runs/default", "vae.safetensors")            # → ["vae.safetensors"]
    scratchvae.export("runs/default", "vae.onnx")                   # → ["vae-encoder.onnx", "vae-decoder.onnx"]
"""
import contextlib
import os

import numpy as np

from ..data.dataset import to_model_input
from ..files.atomic import atomic_write
from ..files.extras import require
from ..model.vae import VAE
from ..ops.devices import to_numpy
from ..run import statedict
from ..run.checkpoint import Checkpoint, CheckpointError
from ..run.runfolder import load
from . import onnxgraph

FORMATS = {".safetensors": "safetensors", ".onnx": "onnx"}
CHECK_IMAGES = 16                       # random frames (and codes) each exported graph is checked on
# onnxruntime against our forward pass: at most this × the largest magnitude of the output (float32 rounding
# differs by ~1e-7 of it: the sums run in other orders; a wrong layout or order differs by ~1e-1 of it)
CHECK_TOLERANCE = 1e-5


def format_of(out, format=None):
    """The format asked for, or the one --out's extension names."""
    if format is not None:
        if format not in FORMATS.values():
            raise ValueError(f"format must be one of {', '.join(FORMATS.values())}, got {format!r}")
        return format
    ext = os.path.splitext(out)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"--out {out}: cannot tell the format from its extension {ext or '(none)'}; name a "
                         f"{' or '.join(FORMATS)} file, or give --format")
    return FORMATS[ext]


def onnx_paths(out):
    """vae.onnx → (vae-encoder.onnx, vae-decoder.onnx): the two graphs' files."""
    stem = out[:-len(".onnx")] if out.lower().endswith(".onnx") else out
    return f"{stem}-encoder.onnx", f"{stem}-decoder.onnx"


def require_for(format, check=True):
    """The packages writing (and checking) `format` needs, imported; else MissingPackage naming the extra."""
    if format == "safetensors":
        require("safetensors.numpy", "export", "writing safetensors files", "safetensors")
    else:
        require("onnx", "export", "writing ONNX graphs")
        if check:
            require("onnxruntime", "export", "checking ONNX graphs")


def paths(out, format):
    return [out] if format == "safetensors" else list(onnx_paths(out))


def checkpoint_of(source, best=False):
    """A Checkpoint from a run folder or file (as scratchvae.load), a Checkpoint, or a VAE (step 0)."""
    if isinstance(source, Checkpoint):
        return source
    if isinstance(source, VAE):
        return Checkpoint(source, None, 0, {}, "")
    return load(os.fspath(source), best=best)


def ctallec_differences(model):
    """What keeps ctallec/world-models' VAE module from giving this model's outputs from its exported weights:
    a list of sentences ([] when nothing does)."""
    c, h, w = model.input_shape
    theirs = VAE(input_shape=(c, 64, 64), latent_dim=model.latent_dim, dense_relu=True, fast=False)
    said = []
    mine, want = statedict.expected(model, "ctallec"), statedict.expected(theirs, "ctallec")
    odd = next((name for name in want if mine.get(name) != want[name]), None)
    if odd is not None:
        said.append(f"its VAE({c}, {model.latent_dim}) has {odd} {want[odd]}, this model "
                    f"{mine.get(odd, 'none')}: load_state_dict will refuse the file")
    if not model.config.get("dense_relu"):
        said.append("its decoder has a ReLU after fc1, which this model lacks: its encoder gives this model's μ and "
                    "log σ (= ½ log σ²), to float32 rounding, but its decoder other pictures (docs/training.md has "
                    "the numbers); drop that ReLU, or read the file with scratchvae.load")
    return said


def export(source, out, format=None, naming="scratchvae", best=False, check=True):
    """Write the model of `source` (a run folder or checkpoint file, as scratchvae.load takes them, a Checkpoint,
    or a VAE) to `out`: safetensors (naming "scratchvae" or "ctallec") or ONNX (two graphs; see onnx_paths), the
    format from `out`'s extension unless given. check: read the file back (safetensors) or run the graphs with
    onnxruntime (ONNX) against the model before putting it in place. Returns the paths written."""
    format = format_of(out, format)
    require_for(format, check)
    if naming not in statedict.NAMINGS:
        raise ValueError(f"naming must be one of {', '.join(statedict.NAMINGS)}, got {naming!r}")
    ck = checkpoint_of(source, best)
    model = ck.model.full_precision()           # (a mixed-precision model's float32 weights, in float32 layers)
    if model.device != "cpu":
        raise ValueError("export: give a model on the CPU (scratchvae.load(…, device='cpu'))")
    if format == "safetensors":
        data = statedict.encode(model, naming, ck.step, ck.meta)
        if check:
            back = statedict.decode(data, out)
            if any(not np.array_equal(to_numpy(back.model.params[k]), to_numpy(p)) for k, p in model.params.items()):
                raise CheckpointError(f"{out}: not written: the weights read back differ from the model's")
        files = {out: data}
    else:
        graphs = (onnxgraph.encoder(model), onnxgraph.decoder(model))
        if check:
            check_graphs(model, *graphs)
        files = dict(zip(onnx_paths(out), (g.SerializeToString() for g in graphs)))
    with contextlib.ExitStack() as all_or_none:                # every file in place, or none of them
        for path, data in files.items():
            all_or_none.enter_context(atomic_write(path)).write(data)
    return list(files)


def check_graphs(model, encoder, decoder, n=CHECK_IMAGES, seed=0):
    """Run the graphs with onnxruntime on n random frames and codes; a ValueError when an output differs from
    the model's by more than CHECK_TOLERANCE of its largest magnitude. Returns {output: that relative difference}."""
    ort = require("onnxruntime", "export", "checking ONNX graphs")
    rng = np.random.default_rng(seed)
    c, h, w = model.input_shape
    frames = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
    z = rng.standard_normal((n, model.latent_dim)).astype(onnxgraph.DTYPE)
    ours = dict(zip(("mu", "logvar"), model.encode(to_model_input(frames, dtype=model.dtype))),
                pictures=model.decode(z.astype(model.dtype)))
    try:
        theirs = dict(zip(("mu", "logvar"), session(ort, encoder).run(None, {"frames": frames})),
                      pictures=session(ort, decoder).run(None, {"z": z})[0])
    except Exception as e:      # onnxruntime's own errors (an operator it lacks, …): said in one line
        raise ValueError(f"onnxruntime {ort.__version__} could not run the graphs: {e}; not written") from None
    differences = {}
    for k, a in ours.items():
        a = to_numpy(a)
        differences[k] = float(np.abs(theirs[k] - a).max() / max(np.abs(a).max(), np.finfo(a.dtype).tiny))
        if not differences[k] <= CHECK_TOLERANCE:
            raise ValueError(f"the ONNX graph's {k} differs from the model's by {differences[k]:.2e} of its largest "
                             f"value (at most {CHECK_TOLERANCE:g} expected): not written")
    return differences


def session(ort, graph, threads=None):
    """An onnxruntime session for a ModelProto (threads: its intra-op threads; None: onnxruntime's choice)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
