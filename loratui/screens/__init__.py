"""The wizard's screens: one module per step (folder, captions, preset, run) plus dialogs and help."""
