"""ctallec/world-models' VAE module (models/vae.py, written out here from its description in the project's
reference: the same layers, fc_mu and fc_logsigma heads, a ReLU after the decoder's fc1) loading our exports, both
ways. Needs PyTorch (the bench extra).

    python bench/ctallec_module.py --checkpoint RUN --frames DATA/episode_000005.npz

1. bin/export --naming ctallec's file into that module with a strict load_state_dict: its μ against ours, 2·log σ
   against our log σ², its decoder against our VAE(dense_relu=True) with the same weights (and against ours);
2. that module's state_dict saved by PyTorch (no metadata) read back by scratchvae.load: a VAE(dense_relu=True),
   whose μ, log σ² and pictures are compared with the module's.
"""
import argparse
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import scratchvae  # noqa: E402


class Encoder(nn.Module):
    def __init__(self, img_channels, latent_size):
        super().__init__()
        self.conv1 = nn.Conv2d(img_channels, 32, 4, stride=2)
        self.conv2 = nn.Conv2d(32, 64, 4, stride=2)
        self.conv3 = nn.Conv2d(64, 128, 4, stride=2)
        self.conv4 = nn.Conv2d(128, 256, 4, stride=2)
        self.fc_mu = nn.Linear(2 * 2 * 256, latent_size)
        self.fc_logsigma = nn.Linear(2 * 2 * 256, latent_size)

    def forward(self, x):
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = F.relu(conv(x))
        x = x.view(x.size(0), -1)
        return self.fc_mu(x), self.fc_logsigma(x)                   # μ and log σ


class Decoder(nn.Module):
    def __init__(self, img_channels, latent_size):
        super().__init__()
        self.fc1 = nn.Linear(latent_size, 1024)
        self.deconv1 = nn.ConvTranspose2d(1024, 128, 5, stride=2)
        self.deconv2 = nn.ConvTranspose2d(128, 64, 5, stride=2)
        self.deconv3 = nn.ConvTranspose2d(64, 32, 6, stride=2)
        self.deconv4 = nn.ConvTranspose2d(32, img_channels, 6, stride=2)

    def forward(self, z):
        x = F.relu(self.fc1(z)).unsqueeze(-1).unsqueeze(-1)         # the ReLU World Models' decoder has not
        for deconv in (self.deconv1, self.deconv2, self.deconv3):
            x = F.relu(deconv(x))
        return torch.sigmoid(self.deconv4(x))


class VAE(nn.Module):
    def __init__(self, img_channels, latent_size):
        super().__init__()
        self.encoder = Encoder(img_channels, latent_size)
        self.decoder = Decoder(img_channels, latent_size)


def biggest(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="a run folder or checkpoint of the default architecture")
    p.add_argument("--frames", required=True, help="an episode file: its first --count frames are encoded")
    p.add_argument("--count", type=int, default=50)
    args = p.parse_args()
    ours = scratchvae.load(args.checkpoint).model
    x = scratchvae.to_model_input(np.load(args.frames)["obs"][:args.count])
    mu, logvar = ours.encode(x)
    relu = scratchvae.VAE(**{**ours.config, "dense_relu": True})
    for k, a in ours.params.items():
        relu.params[k][...] = a
    with tempfile.TemporaryDirectory() as tmp:
        exported = scratchvae.export(ours, os.path.join(tmp, "ct.safetensors"), naming="ctallec")[0]
        module = VAE(3, ours.latent_dim)
        print(f"{args.checkpoint}, {len(x)} frames of {args.frames}; torch {torch.__version__}")
        print("1. the export in ctallec's module:", module.load_state_dict(load_file(exported)))
        with torch.no_grad():
            t_mu, t_logsigma = (a.numpy() for a in module.encoder(torch.from_numpy(np.ascontiguousarray(x))))
            pictures = module.decoder(torch.from_numpy(mu)).numpy()
        print(f"   μ within {biggest(t_mu, mu):.1e} of ours; 2·log σ within {biggest(2 * t_logsigma, logvar):.1e} of "
              f"our log σ²; its pictures within {biggest(pictures, relu.decode(mu)):.1e} of VAE(dense_relu=True)'s "
              f"(and {biggest(pictures, ours.decode(mu)):.2f} of ours)")
        saved = os.path.join(tmp, "from_torch.safetensors")
        save_file(module.state_dict(), saved)                       # as a ctallec user would: no metadata
        back = scratchvae.load(saved).model
        b_mu, b_logvar = back.encode(x)
        with torch.no_grad():
            b_pictures = module.decoder(torch.from_numpy(b_mu)).numpy()
    print(f"2. its state_dict read by scratchvae.load: dense_relu={back.config.get('dense_relu')}; μ within "
          f"{biggest(b_mu, t_mu):.1e}, log σ² within {biggest(b_logvar, 2 * t_logsigma):.1e}, pictures within "
          f"{biggest(back.decode(b_mu), b_pictures):.1e} of the module's")


if __name__ == "__main__":
    main()
