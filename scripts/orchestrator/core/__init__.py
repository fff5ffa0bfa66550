"""The pure core: domain values, the decisions of every workflow, the texts posted, redaction.

Nothing in here performs I/O or imports an adapter: every function is a plain function of
typed values, tested by tables (docs/architecture.md).
"""
