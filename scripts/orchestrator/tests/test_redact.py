"""The redactor catches the token literally, encoded, and cut into pieces; ordinary text stays."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from scripts.orchestrator.core.redact import REDACTED, Redactor

TOKEN = "ghp_" + "Zq7Wm3Kd9Lx2Rv8Tb5Ny1Hc4Pf6Jg0Se2Ua"  # made up, 40 characters
ODD = "s3cr3t/with+odd=chars&more"  # a secret that URL-encoding changes


def leaks(text: str, secret: str = TOKEN) -> bool:
    """Whether any form of the secret survives in `text`."""
    raw = secret.encode()
    for offset in range(3):
        blob = base64.b64encode(b"x" * offset + raw).decode()
        if blob[4:-4] in text:
            return True
    return secret in text or raw.hex() in text.lower()


@pytest.mark.parametrize(
    "shown",
    [
        TOKEN,
        base64.b64encode(TOKEN.encode()).decode(),
        base64.urlsafe_b64encode(TOKEN.encode()).decode(),
        # inside a longer encoded text, at each alignment
        base64.b64encode(f"token={TOKEN}\n".encode()).decode(),
        base64.b64encode(f"GITHUB_TOKEN={TOKEN}".encode()).decode(),
        base64.b64encode(f"Authorization: Basic x:{TOKEN}!".encode()).decode(),
        TOKEN.encode().hex(),
        TOKEN.encode().hex().upper(),
        f"{TOKEN[:20]}\n{TOKEN[20:]}",
        f'"{TOKEN[:13]}" + "{TOKEN[13:]}"',
        f"{TOKEN[:10]} {TOKEN[10:25]}  {TOKEN[25:]}",
        f"{TOKEN[:20]}\\\n{TOKEN[20:]}",
    ],
)
def test_every_form_of_the_token_is_redacted(shown: str) -> None:
    text = f"Here it is: {shown} (done)"
    out = Redactor([TOKEN]).redact(text)
    assert REDACTED in out
    assert not leaks(out), out
    assert out.startswith("Here it is: ") and out.endswith(" (done)")


def test_a_url_encoded_secret_is_redacted() -> None:
    out = Redactor([ODD]).redact(f"?secret={quote(ODD, safe='')}&x=1")
    assert out == f"?secret={REDACTED}&x=1"


def test_the_token_inside_json_and_base64_of_json() -> None:
    blob = json.dumps({"env": {"GITHUB_TOKEN": TOKEN}})
    out = Redactor([TOKEN]).redact(base64.b64encode(blob.encode()).decode())
    assert not leaks(out)


def test_ordinary_text_is_left_alone() -> None:
    """The control: nothing but the secret's forms is touched."""
    text = (
        "def add(a, b):\n    return a + b\n"
        + base64.b64encode(b"an ordinary attachment, nothing secret in it").decode()
        + "\n"
        + "ghp is a prefix, and so is gh; 0123456789abcdef is hex.\n"
    )
    assert Redactor([TOKEN]).redact(text) == text


def test_short_secrets_are_not_redacted() -> None:
    assert Redactor(["abc"]).redact("abc abc") == "abc abc"
