"""Serve mode's HTTP server: the token gate, and what `serve` refuses to start with."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from scripts.orchestrator.config import Settings
from scripts.orchestrator.serving import COOKIE, TokenGate, check_serving, is_loopback, listen
from scripts.orchestrator.startup import StartupError

TOKEN = "dashboard-token-0123456789"


async def _page(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{request.method} {request.url.path}")


def gated(token: str | None) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/", _page), Route("/metrics", _page),
                            Route("/webhook", _page, methods=["POST"])])  # fmt: skip
    transport = httpx.ASGITransport(app=TokenGate(app, token))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765")


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, github_repo="acme/widgets", state_file=tmp_path / "s.json",
                    **values)  # type: ignore[call-arg]  # fmt: skip


async def test_without_a_token_everything_is_open_on_loopback() -> None:
    async with gated(None) as client:
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200


@pytest.mark.parametrize(
    "attempt",
    [
        {},  # nothing shown
        {"headers": {"Authorization": "Bearer wrong-token"}},
        {"headers": {"Authorization": f"Basic {TOKEN}"}},  # not a bearer token
        {"headers": {"Cookie": f"{COOKIE}=wrong-token"}},
        {"params": {"token": TOKEN[:-1]}},  # a prefix is not the token
    ],
)
async def test_a_request_without_the_token_is_refused(attempt: dict[str, object]) -> None:
    async with gated(TOKEN) as client:
        for path in ("/", "/metrics"):
            answer = await client.get(path, **attempt)  # type: ignore[arg-type]
            assert answer.status_code == 401, path
            assert "DASHBOARD_TOKEN" in answer.text and TOKEN not in answer.text
        # The control: the same request with the token gets through.
        shown = await client.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
        assert (shown.status_code, shown.text) == (200, "GET /")


async def test_the_token_once_in_the_address_becomes_a_cookie() -> None:
    async with gated(TOKEN) as client:
        answer = await client.get("/", params={"token": TOKEN, "status": "failed"})
        assert answer.status_code == 303
        # The token leaves the address (and the browser's history); the rest stays, on the
        # host and scheme the browser used.
        assert answer.headers["location"] == "/?status=failed"
        cookie = answer.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert "secure" not in cookie.lower()  # plain http on loopback: it must come back
        assert TOKEN not in cookie  # a value made from the token, not the token
        again = await client.get("/metrics")  # the client keeps the cookie
        assert again.status_code == 200


async def test_behind_an_https_proxy_the_cookie_is_secure() -> None:
    async with gated(TOKEN) as client:
        answer = await client.get("/", params={"token": TOKEN},
                                  headers={"X-Forwarded-Proto": "https"})  # fmt: skip
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        assert "secure" in answer.headers["set-cookie"].lower()


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:8765", "10.0.0.5:8765"])
async def test_without_a_token_only_a_loopback_host_is_served(host: str) -> None:
    # DNS rebinding: a page from evil.example.com, its name now pointing at 127.0.0.1.
    async with gated(None) as client:
        for path in ("/", "/metrics"):
            refused = await client.get(path, headers={"Host": host})
            assert refused.status_code == 400, path
        assert (await client.post("/webhook", headers={"Host": host})).status_code == 200
        for loopback in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "127.0.0.1"):
            assert (await client.get("/", headers={"Host": loopback})).status_code == 200


async def test_webhooks_pass_the_gate_to_their_own_signature_check() -> None:
    async with gated(TOKEN) as client:
        assert (await client.post("/webhook")).status_code == 200  # the receiver judges it


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("127.0.0.2", True),
     ("0.0.0.0", False), ("192.168.1.5", False), ("::", False), ("example.org", False)],  # noqa: S104
)  # fmt: skip
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_serving_other_machines_needs_a_dashboard_token(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"SERVE_HOST=0\.0\.0\.0 .* set DASHBOARD_TOKEN"):
        check_serving(settings(tmp_path, serve_host="0.0.0.0"))  # noqa: S104
    check_serving(settings(tmp_path, serve_host="0.0.0.0", dashboard_token=TOKEN))  # noqa: S104
    check_serving(settings(tmp_path))  # loopback: no token needed


def test_a_port_in_use_is_one_line_naming_the_settings(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(StartupError, match=f"SERVE_PORT={port}: cannot listen there"):
            listen(settings(tmp_path, serve_port=port))
    finally:
        taken.close()
    free = listen(settings(tmp_path, serve_port=port))  # the control: free again, it binds
    free.close()
