"""What ctallec/world-models' decoder makes of our trained weights: its ReLU after fc1, which World Models' decoder
(and ours) does not have, on the held-out frames of a run.

    python bench/ctallec_decoder.py --checkpoint RUN [--frames 500]

Exported with --naming ctallec, the weights load into its VAE(3, 32) by load_state_dict. Its encoder then gives our
μ and log σ exactly (fc_logsigma is our log σ² head halved); its decoder clips the dense layer's negative outputs
to 0 before the first transposed convolution. Printed: the share of those outputs that are negative (at z = μ of
each frame), and the per-pixel MSE of the reconstructions from μ, ours and its, against the frames, with the mean
absolute difference between the two pictures. Its decoder is our VAE(dense_relu=True) with the same weights.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import scratchvae  # noqa: E402
from scratchvae.data.dataset import FrameDataset  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="a run folder (its held-out frames are used) or checkpoint")
    p.add_argument("--frames", type=int, default=500)
    args = p.parse_args()
    ck = scratchvae.load(args.checkpoint)
    s = ck.meta["settings"]
    data = FrameDataset(s["data"], heldout=s["heldout"], seed=s["seed"])
    frames = data.spread(args.frames, data.eval_split)
    ours = ck.model
    theirs = scratchvae.VAE(**{**ours.config, "dense_relu": True})
    for k, a in ours.params.items():
        theirs.params[k][...] = a
    x = scratchvae.to_model_input(frames)
    mu = ours.encode(x)[0]
    dense = mu @ ours.params["decoder.dense.W"] + ours.params["decoder.dense.b"]       # (N, 1024) before the ReLU
    a, b = ours.decode(mu), theirs.decode(mu)
    print(f"{ck.path} (step {ck.step}), {len(frames)} {data.eval_split} frames")
    print(f"dense layer's outputs below 0 (clipped by ctallec's ReLU): {np.mean(dense < 0):.1%}")
    print(f"reconstruction MSE per pixel: ours {np.mean((a - x) ** 2):.5f}, ctallec's decoder "
          f"{np.mean((b - x) ** 2):.5f}; mean |difference| between the two pictures {np.mean(np.abs(a - b)):.4f}")


if __name__ == "__main__":
    main()
