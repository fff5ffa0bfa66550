"""Secret redaction for anything the daemon prints or posts: logs, comments, reviews."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"
# GitHub credentials no child process gets: Claude and pre-merge commands run untrusted code.
SECRET_ENV_VARS = frozenset({"GITHUB_TOKEN", "GH_TOKEN", "GITHUB_PAT", "GH_ENTERPRISE_TOKEN"})

# Shapes of credentials that must never be echoed, whoever's they are (DESIGN §1).
SECRET_PATTERNS = (
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),  # classic GitHub tokens: ghp_, gho_, ghs_ ...
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),  # fine-grained GitHub tokens
    re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{10,}"),  # Anthropic API keys
)
_MIN_LITERAL = 8  # shorter "secrets" would redact ordinary words


class Redactor:
    """Replaces known secrets and secret-shaped strings with a marker."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._literals = sorted(
            {s for s in secrets if s and len(s) >= _MIN_LITERAL}, key=len, reverse=True
        )

    def redact(self, text: str) -> str:
        for literal in self._literals:
            text = text.replace(literal, REDACTED)
        for pattern in SECRET_PATTERNS:
            text = pattern.sub(REDACTED, text)
        return text
