"""scratchvae's VAE as a PyTorch module, for the weights bin/export writes (docs/training.md, "Use it elsewhere").

    model = load("vae.safetensors")                 # PyTorch, safetensors; nothing of scratchvae
    mu, logvar = model.encoder(x)                   # x: float (N, 3, 64, 64) in [0, 1]
    pictures = model.decoder(mu)                    # (N, 3, 64, 64) in (0, 1)

For frames of 64×64 (the World Models size: the decoder starts from a 1×1 image); any widths and latent size.
tests/test_interop.py checks it against the package where PyTorch is installed.
"""
# docs: module
import json

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from torch.nn import functional as F


class Encoder(nn.Module):
    def __init__(self, c, widths, latent):                  # widths: the four convolutions' output channels
        super().__init__()
        for i, (cin, cout) in enumerate(zip((c, *widths), widths), 1):
            setattr(self, f"conv{i}", nn.Conv2d(cin, cout, 4, stride=2))
        self.mu = nn.Linear(widths[-1] * 2 * 2, latent)     # 64 → 31 → 14 → 6 → 2
        self.logvar = nn.Linear(widths[-1] * 2 * 2, latent)

    def forward(self, x):
        for i in range(1, 5):
            x = F.relu(getattr(self, f"conv{i}")(x))
        x = x.view(x.size(0), -1)                           # (N, C·2·2), channel by channel, as scratchvae flattens
        return self.mu(x), self.logvar(x)                   # μ and log σ² (not log σ)


class Decoder(nn.Module):
    def __init__(self, widths, latent, dense_size, dense_relu):   # widths: the four transposed convolutions'
        super().__init__()
        self.dense, self.dense_relu = nn.Linear(latent, dense_size), dense_relu
        for i, (cin, cout, k) in enumerate(zip((dense_size, *widths), widths, (5, 5, 6, 6)), 1):
            setattr(self, f"deconv{i}", nn.ConvTranspose2d(cin, cout, k, stride=2))

    def forward(self, z):
        x = self.dense(z)
        x = F.relu(x) if self.dense_relu else x             # World Models has no ReLU here (ctallec's decoder does)
        x = x.view(x.size(0), -1, 1, 1)                     # a 1×1 image: 1 → 5 → 13 → 30 → 64
        for i in range(1, 4):
            x = F.relu(getattr(self, f"deconv{i}")(x))
        return torch.sigmoid(self.deconv4(x))               # the decoder's mean image


class VAE(nn.Module):
    def __init__(self, config):                             # the "config" of the file's metadata
        super().__init__()
        c = config["input_shape"][0]
        assert config["input_shape"][1:] == [64, 64], "this module is for 64×64 frames"
        self.encoder = Encoder(c, [e[0] for e in config["encoder"]], config["latent_dim"])
        self.decoder = Decoder([d[0] for d in config["decoder"]], config["latent_dim"], config["dense_size"],
                               config.get("dense_relu", False))


def load(path):
    with safe_open(path, "pt") as f:
        model = VAE(json.loads(f.metadata()["config"]))
    model.load_state_dict(load_file(path))                  # names and shapes must all match: strict
    return model.eval()
# end docs: module
