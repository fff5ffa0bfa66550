"""Namespace for the orchestrator package (the name the spec's commands use)."""
