"""Secrets in a change before it is pushed: detect-secrets' precise detectors, and the daemon's
own secrets (the token, the model's key) in every form its redactor knows."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from detect_secrets.core.secrets_collection import SecretsCollection
from detect_secrets.settings import get_settings, transient_settings
from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from .core.models import SecretHit
from .core.redact import Redactor

log = logging.getLogger(__name__)

# Detectors of a credential's own shape. The entropy and keyword detectors are left out: they
# flag hashes, lock files and `password = "example"` in tests, and a false alarm fails the run.
PLUGINS = (
    "AWSKeyDetector", "ArtifactoryDetector", "AzureStorageKeyDetector", "BasicAuthDetector",
    "CloudantDetector", "DiscordBotTokenDetector", "GitHubTokenDetector", "GitLabTokenDetector",
    "IbmCloudIamDetector", "IbmCosHmacDetector", "JwtTokenDetector", "MailchimpDetector",
    "NpmDetector", "OpenAIDetector", "PrivateKeyDetector", "PypiTokenDetector",
    "SendGridDetector", "SlackDetector", "SoftlayerDetector", "SquareOAuthDetector",
    "StripeDetector", "TelegramBotTokenDetector", "TwilioKeyDetector",
)  # fmt: skip
OWN_SECRET = "the daemon's own credential"  # noqa: S105  (a label, not a secret)


class SecretScanner:
    """The `SecretScan` port: what a diff adds that looks like a secret."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor

    def scan(self, diff: str) -> list[SecretHit]:
        hits = {*self._own(diff), *self._shapes(diff)}
        return sorted(hits, key=lambda hit: (hit.path, hit.line, hit.kind))

    def _own(self, diff: str) -> Iterator[SecretHit]:
        try:
            added = list(_added_lines(diff))
        except UnidiffParseError as exc:  # not a diff as git writes them: look at all of it
            log.warning("could not read the diff to scan it line by line: %s", exc)
            if self._redactor.redact(diff) != diff:
                yield SecretHit("(the change)", 0, OWN_SECRET)
            return
        for path, line, text in added:
            if self._redactor.redact(text) != text:
                yield SecretHit(path, line, OWN_SECRET)

    @staticmethod
    def _shapes(diff: str) -> Iterator[SecretHit]:
        with transient_settings({"plugins_used": [{"name": name} for name in PLUGINS]}):
            # The diff's paths are the worktree's, not the daemon's working directory's.
            get_settings().disable_filters("detect_secrets.filters.common.is_invalid_file")
            found = SecretsCollection()
            found.scan_diff(diff)
        for path, secrets in found.data.items():
            for secret in secrets:
                yield SecretHit(path, secret.line_number or 0, secret.type)


def _added_lines(diff: str) -> Iterator[tuple[str, int, str]]:
    """(path, line number in the new file, text) of each line the diff adds."""
    for patch in PatchSet(diff):
        for hunk in patch:
            for line in hunk:
                if line.is_added:
                    yield patch.path, line.target_line_no or 0, line.value
