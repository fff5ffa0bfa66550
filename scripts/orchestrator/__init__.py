"""Claude Development Orchestrator: a daemon that runs Claude Code for a GitHub repository."""

__version__ = "0.1.0"
