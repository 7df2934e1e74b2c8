"""The dataset: its folder, images and captions, the checks on it, and what a step draws from it."""
