"""Training: the loop and its parts (LoRA adapters, noise, the denoiser, checkpoints, stops, processes)."""
