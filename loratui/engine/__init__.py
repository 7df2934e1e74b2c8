"""The engine: everything that is not UI.

Nothing in this package imports textual, rich, typer or ``loratui``'s UI modules; a test
checks that in a fresh interpreter. Heavy libraries (torch, diffusers, peft) are imported
inside the functions that need them so that importing the engine stays cheap.

Subpackages: ``families`` (base models and what differs between them), ``data`` (the dataset
folder, its captions and images, and what a step draws), ``planning`` (a run's schedule,
memory and time before it starts), ``train`` (the loop and its parts), ``validate``
(validation loss, samples, grids), ``export`` (the files a run leaves) and ``runs`` (run
folders). Modules at this level are shared by all: config, events, errors, atomic writes,
paths, fault points and file-safety checks.
"""
