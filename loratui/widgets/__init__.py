"""Reusable widgets of the wizard: step bar, loss chart, memory meter, image preview."""
