"""`demo`: the real daemon loop on a local fake GitHub and model, told as a story in a sandbox."""

# run.py sets the sandbox up and tears it down, director.py plays the scene's people,
# narrator.py tells what the orchestrator does, story.py says how each thing reads.

from .run import run_demo

__all__ = ["run_demo"]
