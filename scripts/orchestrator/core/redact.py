"""Secret redaction for anything the daemon prints or posts: logs, comments, reviews."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote

REDACTED = "[REDACTED]"
# GitHub credentials no child process gets: Claude and pre-merge commands run untrusted code.
# The GitHub token's names, and serve mode's secrets: never in a child's environment.
SECRET_ENV_VARS = frozenset({"GITHUB_TOKEN", "GH_TOKEN", "GITHUB_PAT", "GH_ENTERPRISE_TOKEN",
                             "WEBHOOK_SECRET", "DASHBOARD_TOKEN", "STATE_URL"})  # fmt: skip
# libpq's own: the daemon's connection may need them (they stay in its environment), its
# children never do.
DATABASE_ENV_VARS = frozenset({"PGPASSWORD", "PGPASSFILE"})

# Shapes of credentials that must never be echoed, whoever's they are (DESIGN §1).
SECRET_PATTERNS = (
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),  # classic GitHub tokens: ghp_, gho_, ghs_ ...
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),  # fine-grained GitHub tokens
    re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{10,}"),  # Anthropic API keys
)
_MIN_LITERAL = 8  # shorter "secrets" would redact ordinary words


# Between the pieces of a secret cut up to slip past a literal match: whitespace and line
# breaks, quotes, string concatenation (`"ghp_ab" + "cd"`, `"ab" \\\n "cd"`).
_SPLIT = r"""(?:["'`\s+\\.]|\\n)*"""


class Redactor:
    """Replaces known secrets, their encoded forms, and secret-shaped strings with a marker.

    A known secret is also caught as base64 (standard and URL-safe, at any alignment inside a
    longer encoded text), as hex (either case), URL-encoded, and cut into pieces by line
    breaks, spaces, quotes or `+`.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = {s for s in secrets if s and len(s) >= _MIN_LITERAL}
        forms = {form for secret in known for form in _encoded_forms(secret)}
        self._literals = sorted(known | forms, key=len, reverse=True)
        self._split = [
            re.compile(_SPLIT.join(re.escape(c) for c in secret))
            for secret in sorted(known, key=len, reverse=True)
        ]
        self._hex = [re.compile(re.escape(secret.encode().hex()), re.I) for secret in known]

    def redact(self, text: str) -> str:
        for literal in self._literals:
            text = text.replace(literal, REDACTED)
        for pattern in (*self._hex, *self._split, *SECRET_PATTERNS):
            text = pattern.sub(REDACTED, text)
        return text


def _encoded_forms(secret: str) -> set[str]:
    """The secret URL-encoded, and the parts of its base64 that do not depend on what
    surrounds it in a longer encoded text (three alignments, two alphabets)."""
    raw = secret.encode()
    forms = {quote(secret, safe="")}
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw).decode()
            # The first group mixes in the bytes before; the last, unless complete, the after.
            start = 4 if offset else 0
            end = len(encoded) if (offset + len(raw)) % 3 == 0 else len(encoded) - 4
            forms.add(encoded[start:end])
    return {form for form in forms if len(form) >= _MIN_LITERAL and form != secret}
