"""The scripted model over plain HTTP: wire format, routing of scripts, records, lifecycle."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from scripts.orchestrator.fakes.model_script import (
    ApiError,
    Delay,
    Hang,
    RecordedRequest,
    RequestKind,
    Step,
    Text,
    ToolCall,
    ToolCalls,
    bash,
    invalid_request,
    overloaded,
    write,
)
from scripts.orchestrator.fakes.scripted_model import ScriptedModel, claude_cli_env

CWD = "/work/tree"


def env_section(cwd: str = CWD) -> str:
    """The environment section the real CLI sends with every agent turn (abridged)."""
    return (
        "# Environment\nYou have been invoked in the following environment: \n"
        f" - Primary working directory: {cwd}\n - Is a git repository: true\n"
    )


def turn(
    prompt: str,
    *,
    history: list[dict[str, Any]] | None = None,
    stream: bool = True,
    cwd: str | None = CWD,
    **extra: Any,
) -> dict[str, Any]:
    """A request shaped like the CLI's: the prompt, then the environment as a system message."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": prompt}]}
    ]
    if cwd is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": env_section(cwd)}]})
    body = {
        "model": "claude-opus-5-5",
        "max_tokens": 32000,
        "stream": stream,
        "system": [{"type": "text", "text": "You are a Claude agent."}],
        "tools": [{"name": "Write"}, {"name": "Bash"}, {"name": "Later", "defer_loading": True}],
        "messages": messages + (history or []),
    }
    return body | extra


def post(
    model: ScriptedModel, body: dict[str, Any], session: str = "s-1", path: str = "/v1/messages"
) -> httpx.Response:
    headers = {"X-Claude-Code-Session-Id": session}
    return httpx.post(f"{model.url}{path}?beta=true", json=body, headers=headers, timeout=10)


def events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """Parse a server-sent event stream into (event, data) pairs."""
    parsed = []
    for chunk in response.text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in chunk.splitlines())
        parsed.append((fields["event"], json.loads(fields["data"])))
    return parsed


def reply_of(response: httpx.Response) -> dict[str, Any]:
    """Rebuild the assistant message from a streamed or plain response, as a client would."""
    if not response.headers["content-type"].startswith("text/event-stream"):
        return dict(response.json())
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    for name, data in events(response):
        if name == "message_start":
            message = data["message"]
        elif name == "content_block_start":
            message["content"].append(data["content_block"])
        elif name == "content_block_delta" and data["delta"]["type"] == "text_delta":
            message["content"][data["index"]]["text"] += data["delta"]["text"]
        elif name == "content_block_delta":
            partial[data["index"]] = partial.get(data["index"], "") + data["delta"]["partial_json"]
        elif name == "content_block_stop" and data["index"] in partial:
            message["content"][data["index"]]["input"] = json.loads(partial[data["index"]])
        elif name == "message_delta":
            message["stop_reason"] = data["delta"]["stop_reason"]
            message["usage"]["output_tokens"] = data["usage"]["output_tokens"]
    return message


def test_streams_text_as_the_api_does(scripted_model: ScriptedModel) -> None:
    scripted_model.script(Text("Looks good."))

    response = post(scripted_model, turn("Review PR #3"))

    assert response.status_code == 200
    names = [name for name, _ in events(response)]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    message = reply_of(response)
    assert message["content"] == [{"type": "text", "text": "Looks good."}]
    assert message["stop_reason"] == "end_turn"
    assert message["model"] == "claude-opus-5-5"
    assert message["usage"]["input_tokens"] > 0 and message["usage"]["output_tokens"] > 0


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "json"])
def test_write_resolves_relative_paths_against_the_reported_cwd(
    scripted_model: ScriptedModel, stream: bool
) -> None:
    scripted_model.script(write({"src/a.py": "A = 1\n", "/abs/b.txt": "b"}))

    message = reply_of(post(scripted_model, turn("Implement", stream=stream)))

    assert message["stop_reason"] == "tool_use"
    calls = [(b["name"], b["input"]) for b in message["content"]]
    assert calls == [
        ("Write", {"file_path": f"{CWD}/src/a.py", "content": "A = 1\n"}),
        ("Write", {"file_path": "/abs/b.txt", "content": "b"}),
    ]
    assert len({b["id"] for b in message["content"]}) == 2


def test_cwd_is_also_read_from_the_system_prompt(scripted_model: ScriptedModel) -> None:
    # `claude -p` without the SDK puts the environment section in the system prompt instead.
    scripted_model.script(ToolCalls((ToolCall("Edit", {"file_path": "x.py"}),), text="Editing."))
    body = turn("Go", cwd=None, system=env_section("/elsewhere"))

    message = reply_of(post(scripted_model, body))

    assert message["content"][0] == {"type": "text", "text": "Editing."}
    assert message["content"][1]["input"] == {"file_path": "/elsewhere/x.py"}


def test_bash_step_and_the_tool_result_that_comes_back(scripted_model: ScriptedModel) -> None:
    scripted_model.script(bash("env"), Text("Seen."))
    first = reply_of(post(scripted_model, turn("Go")))
    (call,) = first["content"]
    history = [
        {"role": "assistant", "content": first["content"]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call["id"],
                    "content": [{"type": "text", "text": "HOME=/tmp/h\nPATH=/bin"}],
                }
            ],
        },
    ]

    second = reply_of(post(scripted_model, turn("Go", history=history)))

    assert call["input"]["command"] == "env"
    assert second["content"][0]["text"] == "Seen."
    (result,) = scripted_model.main_requests()[-1].tool_results
    assert (result.tool_name, dict(result.tool_input)) == ("Bash", dict(call["input"]))
    assert result.text.splitlines() == ["HOME=/tmp/h", "PATH=/bin"]
    assert not result.is_error
    assert scripted_model.main_requests()[0].tool_results == ()
    assert scripted_model.main_requests()[-1].all_tool_results == (result,)


def test_records_what_the_cli_sent(scripted_model: ScriptedModel) -> None:
    post(scripted_model, turn("Implement issue #42", stream=False), session="abc")

    (request,) = scripted_model.requests
    assert request.kind is RequestKind.MAIN and request.conversation == "default"
    assert request.model == "claude-opus-5-5" and not request.stream
    assert request.tool_names == ("Write", "Bash", "Later")
    assert request.direct_tool_names == ("Write", "Bash")
    assert request.system == "You are a Claude agent."
    assert request.first_user_text == "Implement issue #42"
    assert str(request.cwd) == CWD
    assert request.session_id == "abc"
    assert request.path == "/v1/messages?beta=true"
    assert "Primary working directory" in request.all_text


def test_exhausted_script_answers_done(scripted_model: ScriptedModel) -> None:
    scripted_model.script(Text("First."))

    texts = [reply_of(post(scripted_model, turn("Go")))["content"][0]["text"] for _ in range(2)]

    assert texts == ["First.", "Done."]
    assert scripted_model.remaining() == 0


def test_side_requests_do_not_consume_the_script(scripted_model: ScriptedModel) -> None:
    scripted_model.script(Text("Main answer."))
    # The session title request, as the real CLI sends it: no environment section, no tools,
    # the main scripted_model, and a JSON schema for structured output.
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    title = turn(
        "<session>\nImplement issue #42\n</session>",
        cwd=None,
        tools=[],
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    quota = turn("quota", max_tokens=1, stream=False)

    title_reply = reply_of(post(scripted_model, title))
    quota_reply = reply_of(post(scripted_model, quota))
    main_reply = reply_of(post(scripted_model, turn("Implement issue #42")))

    assert json.loads(title_reply["content"][0]["text"]) == {"title": "Scripted side reply."}
    assert quota_reply["content"][0]["text"] == "Scripted side reply."
    assert main_reply["content"][0]["text"] == "Main answer."
    assert [r.kind for r in scripted_model.requests] == [
        RequestKind.SIDE,
        RequestKind.SIDE,
        RequestKind.MAIN,
    ]
    assert len(scripted_model.side_requests()) == 2 and len(scripted_model.main_requests()) == 1


def test_count_tokens_is_answered_and_recorded(scripted_model: ScriptedModel) -> None:
    scripted_model.script(Text("Kept."))

    response = post(scripted_model, turn("Go"), path="/v1/messages/count_tokens")

    assert response.status_code == 200 and response.json()["input_tokens"] > 0
    assert [r.kind for r in scripted_model.requests] == [RequestKind.COUNT_TOKENS]
    assert scripted_model.remaining() == 1


@pytest.mark.parametrize(
    ("step", "status", "error_type"),
    [
        (ApiError(), 500, "api_error"),
        (overloaded(), 529, "overloaded_error"),
        (invalid_request("too long"), 400, "invalid_request_error"),
    ],
)
def test_api_errors_have_the_api_shape(
    scripted_model: ScriptedModel, step: ApiError, status: int, error_type: str
) -> None:
    scripted_model.script(step)

    response = post(scripted_model, turn("Go"))

    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == error_type


def test_error_times_and_sticky_errors(scripted_model: ScriptedModel) -> None:
    scripted_model.script(ApiError(times=2), Text("Recovered."))
    scripted_model.script_for("doomed", [invalid_request(), Text("never")])

    statuses = [post(scripted_model, turn("Go")).status_code for _ in range(3)]
    doomed = [post(scripted_model, turn("doomed run"), session="s-2").status_code for _ in range(6)]

    assert statuses == [500, 500, 200]
    assert doomed == [400] * 6
    assert scripted_model.remaining("doomed") == 2


def test_callable_step_sees_the_request(scripted_model: ScriptedModel) -> None:
    def echo(request: RecordedRequest) -> Step:
        return Text(f"{len(request.tool_names)} tools, prompt {request.first_user_text!r}")

    scripted_model.script(echo)

    message = reply_of(post(scripted_model, turn("hi")))

    assert message["content"][0]["text"] == "3 tools, prompt 'hi'"


def test_a_failing_step_is_a_400_for_the_rest_of_the_session() -> None:
    def broken(request: RecordedRequest) -> Step:
        raise ValueError("bug in the test")

    with ScriptedModel([broken, Text("next")]) as model:
        first = post(model, turn("Go"))
        second = post(model, turn("Go"))
        elsewhere = post(model, turn("Go", stream=False), session="s-2")

    assert first.status_code == second.status_code == 400
    assert "bug in the test" in first.json()["error"]["message"]
    assert model.errors == ["request 0: callable step raised ValueError('bug in the test')"]
    # Another session is not poisoned: it goes on with the script.
    assert elsewhere.json()["content"][0]["text"] == "next"


def test_relative_path_without_a_cwd_is_a_script_error() -> None:
    # A main request without an environment section needs a custom classifier to exist at all.
    with ScriptedModel([write({"a.txt": "a"})], is_side=lambda r: False) as model:
        response = post(model, turn("Go", cwd=None))

    assert response.status_code == 400
    assert "relative path" in model.errors[0]


def test_scripts_per_conversation_are_chosen_by_marker(scripted_model: ScriptedModel) -> None:
    scripted_model.script(Text("default 1"), Text("default 2"))
    scripted_model.script_for("issue-1", [Text("one 1"), Text("one 2")])
    scripted_model.script_for("issue-2", [Text("two 1")])

    def say(prompt: str, session: str) -> str:
        return str(
            reply_of(post(scripted_model, turn(prompt), session=session))["content"][0]["text"]
        )

    # A session keeps its script for later turns, whatever their content.
    answers = [
        say("Implement issue-2", "b"),
        say("Implement issue-1", "a"),
        say("Something else", "c"),
        say("Implement issue-1", "a"),
        say("Implement issue-2", "b"),
    ]

    assert answers == ["two 1", "one 1", "default 1", "one 2", "Done."]
    assert [r.conversation for r in scripted_model.main_requests("issue-1")] == [
        "issue-1",
        "issue-1",
    ]
    assert scripted_model.remaining() == 1


def test_delay_holds_the_reply(scripted_model: ScriptedModel) -> None:
    scripted_model.script(Delay(0.3, Text("Slow.")))
    started = time.monotonic()

    message = reply_of(post(scripted_model, turn("Go")))

    assert message["content"][0]["text"] == "Slow."
    assert time.monotonic() - started >= 0.3


def test_reply_delay_applies_to_every_main_turn() -> None:
    with ScriptedModel([Text("a")], reply_delay=0.2) as model:
        started = time.monotonic()
        post(model, turn("Go"))
        elapsed = time.monotonic() - started

    assert elapsed >= 0.2


def test_hang_holds_until_stop_and_stop_is_bounded() -> None:
    outcome: list[BaseException | httpx.Response] = []
    with ScriptedModel([Hang()]) as model:

        def call() -> None:
            try:
                outcome.append(post(model, turn("Go")))
            except httpx.HTTPError as exc:
                outcome.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        model.wait_for_requests(1, timeout=5)
        assert outcome == []  # held, not answered
        started = time.monotonic()
        model.stop(timeout=5)
        caller.join(5)

    assert time.monotonic() - started < 2
    assert not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.HTTPError)


def test_stop_closes_idle_keep_alive_connections() -> None:
    with ScriptedModel() as model, httpx.Client(timeout=5) as client:
        client.post(f"{model.url}/v1/messages", json=turn("Go", stream=False))
        started = time.monotonic()
        model.stop(timeout=5)

        assert time.monotonic() - started < 2


def test_wait_for_requests_times_out(scripted_model: ScriptedModel) -> None:
    with pytest.raises(TimeoutError):
        scripted_model.wait_for_requests(1, timeout=0.05)


def test_unknown_routes_get_a_json_404_and_are_recorded(scripted_model: ScriptedModel) -> None:
    missing = httpx.get(f"{scripted_model.url}/v1/models", timeout=5)
    probe = httpx.head(f"{scripted_model.url}/api/hello", timeout=5)
    bad = httpx.post(f"{scripted_model.url}/v1/messages", content=b"not json", timeout=5)

    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert probe.status_code == 200
    assert bad.status_code == 400
    assert scripted_model.unknown_routes == ["GET /v1/models"]
    assert scripted_model.requests == []


def test_lifecycle_errors() -> None:
    model = ScriptedModel()
    with pytest.raises(RuntimeError):
        _ = model.url
    model.stop()  # stopping a model that never started is harmless
    with model:
        assert model.url.startswith("http://127.0.0.1:")
        with pytest.raises(RuntimeError):
            model.start()


def test_cli_env_points_at_the_model(tmp_path: Any) -> None:
    env = claude_cli_env("http://127.0.0.1:1", tmp_path, max_retries=None)

    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:1"
    assert env["HOME"] == str(tmp_path)
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["ANTHROPIC_API_KEY"]
    assert "CLAUDE_CODE_MAX_RETRIES" not in env
    assert claude_cli_env("u", tmp_path)["CLAUDE_CODE_MAX_RETRIES"] == "0"
