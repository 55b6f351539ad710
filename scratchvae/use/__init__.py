"""What a trained model serves: the latents the next stage of World Models reads (latents) and the
explorer behind bin/explore (explorer)."""
