"""bin/sample: the pictures of any checkpoint, drawn anew: prior samples, reconstructions and a latent
traversal of frames from a data folder, of image files, or of the run's own held-out frames, and the
decoding of given codes."""
import os
import warnings
import zipfile

import numpy as np

from . import OneLineParser, add_checkpoint_options, at_most, non_negative_int, run, run_dataset
from ..run import pictures
from ..files.atomic import folder_for
from ..ops.devices import resolve_device
from ..run.checkpoint import ZIP_MAGIC
from ..data.dataset import SPLIT_NAMES, FrameDataset, to_model_input
from ..data.episodes import DataError
from ..use.latents import first_rows
from ..run.runfolder import RunFolder, load

# What the options may ask for, checked before any work: each multiplies time and memory (a decoded image
# takes about 1.5 MB on its way through the default model, an encoded one about 0.8 MB, in batches of 64)
MAX_SAMPLES = 1024                      # samples.png: 128 rows of 8
MAX_IMAGES = 256                        # --images: each is read and encoded (the pictures show 8 of them)
CODES = 64                              # --codes: the first 64 are decoded


def parser():
    p = OneLineParser(
        prog="sample",
        description="Draw a trained model's pictures into OUT: images decoded from the prior, and reconstructions "
                    "and a latent traversal of frames (from --data, from --images, or, given a run, of the run's "
                    "own held-out frames, as training drew them), and the loss curves of a run.")
    add_checkpoint_options(p)
    p.add_argument("--out", required=True, help="folder for the pictures (made if need be)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--data", help="folder of episode files: reconstruct frames spread evenly over all of them")
    g.add_argument("--images", nargs="+", metavar="IMAGE",
                   help=f"image files (PNG, JPEG, …) to reconstruct, resized to the model's frame size; at most "
                        f"{MAX_IMAGES}")
    p.add_argument("--codes", help="codes to decode into decoded.png: an .npy array (N, latent-dim), or a latents "
                                   f"file from encode-latents (its mu); the first {CODES} (the rest is not read)")
    p.add_argument("--samples", type=at_most(MAX_SAMPLES, "each is decoded and drawn into samples.png"), default=32,
                   help=f"images decoded from the prior, at most {MAX_SAMPLES:,} (default 32)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the prior's draws (default 0)")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu", help="default cpu")
    return p


def read_images(paths, size):
    """uint8 (N, H, W, 3) of image files, each converted to RGB and resized (bilinear) to size (H, W). An image
    past Pillow's limit on pixels (a 'decompression bomb') is refused as unreadable, not decoded."""
    from PIL import Image, UnidentifiedImageError
    if len(paths) > MAX_IMAGES:
        raise DataError(f"--images: expected at most {MAX_IMAGES} files (each is read and encoded; the pictures "
                        f"show 8 of them), got {len(paths):,}")
    h, w = size
    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for path in paths:
            try:
                with Image.open(path) as im:
                    frames.append(np.asarray(im.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.uint8))
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError,
                    Image.DecompressionBombWarning) as e:
                raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    return np.stack(frames)


def read_codes(path, latent_dim):
    """float (N ≤ CODES, latent_dim): the first codes of an .npy array or of an encode-latents file (its mu),
    read without reading the rest of the file."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
            f.seek(0)
            if head == b"\x93NUMPY":
                z = first_rows(f, CODES)
            elif head[:4] in ZIP_MAGIC:
                with zipfile.ZipFile(f) as zf, zf.open("mu.npy") as member:
                    z = first_rows(member, CODES)
            else:
                raise ValueError(f"a file that begins with {head!r}")
    except KeyError:
        raise DataError(f"--codes {path}: expected an .npy array of codes, or a latents file with mu; got a "
                        "zip archive without mu") from None
    except OSError as e:
        raise DataError(f"--codes {path}: {e.strerror or e}") from None
    except (ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"--codes {path}: expected an .npy array of codes, or a latents file with mu; "
                        f"got {e}") from None
    if z.ndim != 2 or z.shape[1] != latent_dim or z.dtype.kind != "f" or len(z) == 0:
        raise DataError(f"--codes {path}: expected float codes (N, {latent_dim}), got {z.dtype} {z.shape}")
    if not np.isfinite(z).all():
        raise DataError(f"--codes {path}: holds NaN or infinite values")
    return z


def run_frames(ck, n=64):
    """(frames, source) of the run's own pictures, drawn as training draws them: n held-out frames of the
    data folder the checkpoint records, when it is still there with the same episodes; else (None, why)."""
    try:
        data = run_dataset(ck)
    except DataError as e:
        return None, str(e)
    return data.spread(n, data.eval_split), SPLIT_NAMES[data.eval_split]


def run_log(ck):
    """The log rows, up to the checkpoint's step, of the run folder the checkpoint is in ([] if none)."""
    checkpoints = os.path.dirname(os.path.abspath(ck.path))
    if os.path.basename(checkpoints) != "checkpoints":
        return []
    try:
        rows = RunFolder(os.path.dirname(checkpoints)).read_log()
    except ValueError:
        return []
    return [r for r in rows if r.get("step", 0) <= ck.step]


def main(argv=None):
    args = parser().parse_args(argv)
    device = resolve_device(args.device)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise NotADirectoryError(f"--out {args.out} is a file; expected a folder for the pictures")
    ck = load(args.checkpoint, device=device, best=args.best)
    model = ck.model
    print(f"sample: {ck.path} (step {ck.step})")
    size = tuple(model.input_shape[1:])
    if args.images:
        frames, source = read_images(args.images, size), "given images"
    elif args.data:
        data = FrameDataset(args.data, heldout=0, size=size)
        frames, source = data.spread(64, "train"), f"frames of {args.data}"
    else:
        frames, source = run_frames(ck)
        if frames is None:
            print(f"sample: no frames to reconstruct ({source}); give --data or --images for them")
    if frames is not None and frames.shape[1:3] != size:
        raise DataError(f"frames are {frames.shape[1]}x{frames.shape[2]}, the model expects {size[0]}x{size[1]}")
    z = None if args.codes is None else read_codes(args.codes, model.latent_dim)
    x = None if frames is None else to_model_input(frames, device, model.dtype)
    with folder_for(args.out):                          # (made for the pictures; removed again if none came)
        written = pictures.write_all(args.out, model, x, ck.step, source, seed=args.seed, rows=run_log(ck),
                                     samples=args.samples)
        if z is not None:
            title = f"{len(z)} codes of {args.codes}, decoded (the decoder's mean for each z), step {ck.step}"
            pictures.save(pictures.decoded_figure(model, z, title), os.path.join(args.out, "decoded.png"))
            written.append("decoded.png")
    print(f"sample: wrote {', '.join(written)} into {args.out}")
    return 0


def entry():
    return run("sample", main)
