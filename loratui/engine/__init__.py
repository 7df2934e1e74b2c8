"""The engine: everything that is not UI.

Nothing in this package imports textual, rich, typer or ``loratui``'s UI modules; a test
checks that in a fresh interpreter. Heavy libraries (torch, diffusers, peft) are imported
inside the functions that need them so that importing the engine stays cheap.
"""
