"""bin/evaluate: a trained model's ELBO and importance-weighted log p(x) on frames, as VAE papers report them."""
import json
import math
import os

import numpy as np

from . import OneLineParser, add_checkpoint_options, at_most, non_negative_int, positive_float, run, run_dataset
from ..data.dataset import SPLIT_NAMES, FrameDataset
from ..data.episodes import DataError
from ..files.atomic import atomic_write, folder_for
from ..ops.devices import resolve_device
from ..run.runfolder import load
from ..use import likelihood

# each frame is decoded once per sample: the work is frames × samples decodes, 0.53 ms each on 2 CPU cores
# (bench/results/cpu2-evaluate.txt)
MAX_FRAMES = 10_000
MAX_SAMPLES = 5_000
MAX_DECODES = 2_000_000                 # frames × samples: about 18 minutes on 2 cores
BATCH = 100                             # frames encoded, and decoded per draw, together


def parser():
    p = OneLineParser(
        prog="evaluate",
        description="Measure how well a trained model explains frames: the ELBO and Burda et al.'s importance-weighted "
                    "bound L_K on log p(x) for K = 1, 2, 4, … up to --samples (L_1 is the ELBO; L_K rises towards "
                    "log p(x)), in nats per image and bits per dimension, under the model's own likelihood (a "
                    "Gaussian with variance β/2 for a model trained with the squared error; the continuous "
                    "Bernoulli for --recon bernoulli). docs/vae.md derives it.")
    add_checkpoint_options(p)
    p.add_argument("--data", help="folder of episode files: frames spread over all of it (default: the run's own "
                                  "held-out frames, from the data folder its checkpoint names)")
    p.add_argument("--frames", type=at_most(MAX_FRAMES, "each is decoded once per sample"), default=500,
                   help=f"frames to evaluate, spread evenly, at most {MAX_FRAMES:,} (default 500)")
    p.add_argument("--samples", type=at_most(MAX_SAMPLES, "each frame is decoded once per sample"), default=64,
                   help=f"K, draws of z per frame, at most {MAX_SAMPLES:,} (default 64; frames × samples at most "
                        f"{MAX_DECODES:,})")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--variance", type=positive_float,
                   help="the Gaussian likelihood's variance s² per pixel (default β/2, the one the training loss "
                        "implies)")
    p.add_argument("--out", help="also write the numbers, per K and per frame, to this JSON file")
    p.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu", help="default cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def frames_to_evaluate(ck, folder, n, size):
    """(FrameDataset, frame numbers, split, source): n frames spread over folder (all of it), or over the held-out
    frames of the data folder the checkpoint names (as training split it)."""
    if folder is not None:
        data = FrameDataset(folder, heldout=0, size=size)
        split, source = "train", f"frames of {folder}"
    else:
        try:
            data = run_dataset(ck, size)
        except DataError as e:
            raise DataError(f"{ck.path}: {e}: give --data") from None
        split = data.eval_split
        source = f"{SPLIT_NAMES[split]} of {data.folder}"
    return data, data.spread_numbers(n, split), split, source


def table(result):
    """The lines printed: each row in nats per image and, for log p(x)'s bounds, bits per dimension; ± one
    standard error of the mean over the frames."""
    n, dims = result["frames"], result["dims"]

    def cell(values, bits=False):
        mean, se = float(np.mean(values)), float(np.std(values) / math.sqrt(len(values)))
        text = f"{mean:12.2f} ± {se:6.2f}"
        return text + (f"   {likelihood.bits_per_dim(mean, dims):7.4f}" if bits else "")
    lines = [f"{'':32s}{'nats per image':>21s}   bits/dim",
             f"{'E_q log p(x | z)':32s}{cell(result['recon'])}",
             f"{'KL(q(z | x) ‖ p(z))':32s}{cell(result['kl'])}",
             f"{'ELBO = E_q log p(x | z) − KL':32s}{cell(result['elbo'], True)}"]
    for k, values in result["bounds"].items():
        lines.append(f"{f'log p(x) ≥ L_{k}':32s}{cell(values, True)}")
    gap = result["bounds"][result["samples"]] - result["elbo"]            # the same frames: a paired difference
    lines.append(f"L_{result['samples']} − ELBO: {float(np.mean(gap)):.2f} ± {float(np.std(gap) / math.sqrt(n)):.2f} "
                 f"nats per image, over {n:,} frames (the rows share their frames and draws: their differences are "
                 f"surer than each row's ±)")
    return lines


def as_json(result, ck, source):
    per = {k: [round(float(v), 6) for v in result[k]] for k in ("recon", "kl", "elbo")}
    return {"checkpoint": ck.path, "step": ck.step, "source": source, "frames": result["frames"],
            "dims": result["dims"], "likelihood": result["likelihood"], "variance": result["variance"],
            "samples": result["samples"], "seed": result["seed"],
            "mean_nats": {"recon": float(np.mean(result["recon"])), "kl": float(np.mean(result["kl"])),
                          "elbo": float(np.mean(result["elbo"])),
                          **{f"L_{k}": float(np.mean(v)) for k, v in result["bounds"].items()}},
            "bits_per_dim": {"elbo": likelihood.bits_per_dim(float(np.mean(result["elbo"])), result["dims"]),
                             **{f"L_{k}": likelihood.bits_per_dim(float(np.mean(v)), result["dims"])
                                for k, v in result["bounds"].items()}},
            "per_frame": {**per, **{f"L_{k}": [round(float(x), 6) for x in v] for k, v in result["bounds"].items()}}}


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    if args.frames * args.samples > MAX_DECODES:
        p.error(f"--frames × --samples: expected at most {MAX_DECODES:,} decodes (0.53 ms each on 2 CPU "
                f"cores), got {args.frames:,} × {args.samples:,} = {args.frames * args.samples:,}")
    if args.out is not None and os.path.isdir(args.out):
        raise IsADirectoryError(f"--out {args.out} is a folder; expected a file name for the JSON")
    device = resolve_device(args.device)
    ck = load(args.checkpoint, device=device, best=args.best)
    model = ck.model
    kind, variance = likelihood.likelihood_of(model, args.variance)
    data, numbers, split, source = frames_to_evaluate(ck, args.data, args.frames, tuple(model.input_shape[1:]))
    c, h, w = model.input_shape
    print(f"evaluate: {ck.path} (step {ck.step}): {len(numbers):,} {source}, {c}×{h}×{w} = {c * h * w:,} "
          f"dimensions, K = {args.samples} draws each (seed {args.seed})")
    said = (f"Gaussian N(x; y, s²), s² = {variance:g}" + (" (β/2, the variance the training loss implies)"
                                                           if args.variance is None else " (--variance)")
            if kind == "gaussian" else "continuous Bernoulli CB(x; y), the cross-entropy's density")
    print(f"evaluate: likelihood p(x | z): {said}; bits/dim are those of the 8-bit frame, the density times its "
          f"bin (1/255 a pixel)")
    batches = (data.gather(*data.locate(numbers[i:i + BATCH], split)) for i in range(0, len(numbers), BATCH))
    result = likelihood.evaluate(model, batches, args.samples, args.seed, variance, device, not args.quiet,
                                 total=len(numbers))
    print("\n".join(table(result)))
    if args.out is not None:
        with folder_for(os.path.dirname(args.out) or os.curdir), atomic_write(args.out, "w") as f:
            json.dump(as_json(result, ck, source), f, indent=1)
        print(f"evaluate: wrote {args.out}")
    return 0


def entry():
    return run("evaluate", main)
