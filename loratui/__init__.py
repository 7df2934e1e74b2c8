"""loratui: train Stable Diffusion LoRAs from a folder of photos, in the terminal."""

__version__ = "0.1.0"
