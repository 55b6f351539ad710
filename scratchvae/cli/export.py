"""bin/export: a trained model as safetensors weights in PyTorch's names and layouts, or as ONNX graphs."""
import os
import warnings

from . import OneLineParser, add_checkpoint_options, run
from ..files.atomic import folder_for
from ..run import statedict
from ..run.runfolder import load
from ..use.export import FORMATS, ctallec_differences, export, format_of, paths, require_for


def parser():
    p = OneLineParser(
        prog="export",
        description="Write a trained model where other code reads it: safetensors weights in PyTorch's names and "
                    "layouts (nn.Conv2d (out, in, kh, kw), nn.ConvTranspose2d (in, out, kh, kw), nn.Linear (out, in)), "
                    "which scratchvae.load and the tools read back too; or ONNX, the encoder (uint8 frames (N, H, W, "
                    "3) → mu, logvar) and the decoder (z → pictures) as two graphs. Each file is checked before it is "
                    "put in place: the weights read back to the bit, the graphs run by onnxruntime against this "
                    "package's forward pass.")
    add_checkpoint_options(p)
    p.add_argument("--out", required=True,
                   help="the file to write: NAME.safetensors, or NAME.onnx for NAME-encoder.onnx and NAME-decoder.onnx "
                        "(its folder is made if need be)")
    p.add_argument("--format", choices=sorted(set(FORMATS.values())),
                   help="safetensors or onnx (default: from --out's extension)")
    p.add_argument("--naming", choices=sorted(statedict.NAMINGS), default="scratchvae",
                   help="safetensors: the tensors' names: scratchvae (encoder.conv1.weight … encoder.mu, "
                        "encoder.logvar, decoder.dense …; the module of docs/training.md) or ctallec "
                        "(ctallec/world-models' VAE: encoder.fc_mu, encoder.fc_logsigma holding log σ, decoder.fc1) "
                        "(default scratchvae)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    format = format_of(args.out, args.format)
    if format == "onnx" and args.naming != "scratchvae":
        raise ValueError("--naming is for safetensors files: ONNX graphs name their inputs and outputs "
                         "(frames, mu, logvar; z, pictures)")
    for path in paths(args.out, format):
        if os.path.isdir(path):
            raise IsADirectoryError(f"--out {path} is a folder; expected a file name")
    require_for(format)
    with folder_for(os.path.dirname(args.out) or os.curdir):
        ck = load(args.checkpoint, best=args.best)
        if args.naming == "ctallec":
            for sentence in ctallec_differences(ck.model):
                warnings.warn(f"ctallec/world-models' VAE: {sentence}")
        written = export(ck, args.out, format, args.naming)
    what = f"naming {args.naming}" if format == "safetensors" else \
        "checked with onnxruntime; input frames uint8 (N, H, W, C), outputs mu, logvar / pictures"
    print(f"export: {ck.path} (step {ck.step}, {ck.model.num_params():,} parameters) → {', '.join(written)} "
          f"({format}, {what})")
    return 0


def entry():
    return run("export", main)
