"""The model: the layers (each a forward and a hand-written backward), the loss terms with their
closed-form gradients (losses), the VAE built from them (vae), and the optimizer (optim)."""
