"""Run folders: their state, lock and registry, and TensorBoard as an event consumer."""
