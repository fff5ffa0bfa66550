"""Git remote URLs, read the way git reads them: which host and which `owner/repo` they name."""

from __future__ import annotations

import re
from urllib.parse import urlparse

# git's scp-like syntax, `[user@]host:path`: a colon before any slash (else a local path).
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?\[?([^@/:\]]+)\]?:(.*)$")


def repo_of_url(url: str) -> str | None:
    """`owner/repo` of a GitHub-style remote URL; None for a local path."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https", "ssh", "git"):
        path = parsed.path
    elif "://" not in url and (match := _SCP_LIKE.match(url)):
        path = match.group(2)
    else:
        return None
    parts = path.strip("/").removesuffix(".git").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else None


def host_of_url(url: str) -> str | None:
    """The host a remote URL points at; None for a local path."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https", "ssh", "git"):
        return parsed.hostname
    if "://" not in url and (match := _SCP_LIKE.match(url)):
        return match.group(1)
    return None


def foreign_host(url: str, api_url: str) -> str | None:
    """The host `url` points at if it is not the GitHub of `api_url` (a local path is fine)."""
    host, expected = host_of_url(url), git_host(api_url)
    if host is None or host.lower() in (expected, f"ssh.{expected}"):
        return None
    return host


def git_host(api_url: str) -> str:
    """The git host of a GitHub API root: github.com for api.github.com, else its own host."""
    host = (urlparse(api_url).hostname or "").lower()
    return "github.com" if host == "api.github.com" else host


def clone_url(api_url: str, repo: str) -> str:
    """The HTTPS URL git clones `repo` (owner/repo) from, on the GitHub of `api_url`."""
    parsed = urlparse(api_url)
    host = git_host(api_url)
    port = f":{parsed.port}" if parsed.port and host != "github.com" else ""
    scheme = "https" if host == "github.com" else (parsed.scheme or "https")
    return f"{scheme}://{host}{port}/{repo}.git"


def web_url(api_url: str, repo: str) -> str:
    """The repository's page on the GitHub of `api_url`, e.g. https://github.com/owner/repo."""
    return clone_url(api_url, repo).removesuffix(".git")
