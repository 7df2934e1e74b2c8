"""Judging a LoRA: validation loss, the probe, sample images and XYZ grids."""
