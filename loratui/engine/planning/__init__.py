"""What a run will be before it starts: its schedule, presets, GPU memory and time."""
