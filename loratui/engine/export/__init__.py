"""What a run leaves for its users: LoRA files in kohya and diffusers format, metadata, the run card."""
