"""bin/encode-latents: mu and logvar of every frame of every episode, with actions, in one file."""

from . import OneLineParser, add_checkpoint_options, at_most, run
from ..files.atomic import removed_on_failure
from ..ops.devices import resolve_device
from ..use.latents import check_writable, encode_folder
from ..run.runfolder import load

MAX_BATCH = 4096                        # frames encoded together (memory grows with it; the frames are streamed)


def parser():
    p = OneLineParser(
        prog="encode-latents",
        description="Encode every frame of every episode in DATA with a trained checkpoint and write mu, logvar, "
                    "actions, rewards and done flags to one .npz for the memory model (layout: scratchvae/use/latents.py).")
    add_checkpoint_options(p)
    p.add_argument("--data", required=True, help="folder of episode files")
    p.add_argument("--out", required=True, help="output .npz file (its folder is made if need be)")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu", help="default cpu")
    p.add_argument("--batch-size", type=at_most(MAX_BATCH, "a batch's images pass through the encoder together"),
                   default=200, help=f"frames encoded together, at most {MAX_BATCH:,} (default 200; about 0.8 MB "
                                     "each on the CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    device = resolve_device(args.device)
    with removed_on_failure(check_writable(args.out)):         # (a folder made for the file goes if none comes)
        ck = load(args.checkpoint, device=device, best=args.best)
        if ck.path != args.checkpoint:
            print(f"encode-latents: using {ck.path} (step {ck.step})")
        done = encode_folder(ck.model, args.data, args.out, args.batch_size, progress=not args.quiet,
                             checkpoint=ck.path)
    print(f"encode-latents: {done['episodes']} episodes, {done['frames']} frames, latent {done['latent_dim']} "
          f"→ {args.out}")
    return 0


def entry():
    return run("encode-latents", main)
