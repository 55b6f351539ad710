"""bin/encode-latents: mu and logvar of every frame of every episode, with actions, in one file."""

from . import OneLineParser, add_checkpoint_options, positive_int, run
from ..backend import resolve_device
from ..latents import check_writable, encode_folder
from ..runfolder import load


def parser():
    p = OneLineParser(
        prog="encode-latents",
        description="Encode every frame of every episode in DATA with a trained checkpoint and write mu, logvar, "
                    "actions, rewards and done flags to one .npz for the memory model (layout: scratchvae/latents.py).")
    add_checkpoint_options(p)
    p.add_argument("--data", required=True, help="folder of episode files")
    p.add_argument("--out", required=True, help="output .npz file (its folder is made if need be)")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu", help="default cpu")
    p.add_argument("--batch-size", type=positive_int, default=200, help="frames per batch (default 200)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    device = resolve_device(args.device)
    check_writable(args.out)
    ck = load(args.checkpoint, device=device, best=args.best)
    if ck.path != args.checkpoint:
        print(f"encode-latents: using {ck.path} (step {ck.step})")
    arrays = encode_folder(ck.model, args.data, args.out, args.batch_size, progress=not args.quiet,
                           checkpoint=ck.path)
    print(f"encode-latents: {len(arrays['episodes'])} episodes, {len(arrays['mu'])} frames, "
          f"latent {arrays['mu'].shape[1]} → {args.out}")
    return 0


def entry():
    return run("encode-latents", main)
