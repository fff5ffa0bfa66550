"""tools/render_demo.py's drawing, without running the demo: lines in, a well-formed SVG out
that shows them (escaped, cut to the window) and fetches nothing."""

from __future__ import annotations

import importlib.util
import re
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

from scripts.orchestrator.demo.story import stamp

pytest.importorskip("rich")

SVG = "{http://www.w3.org/2000/svg}"
COMMAND = "python -m scripts.orchestrator.main demo"


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    path = Path(__file__).resolve().parents[3] / "tools" / "render_demo.py"
    spec = importlib.util.spec_from_file_location("render_demo", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - the tool's own output, no outside XML


def cells(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def rows(svg: str) -> list[tuple[str, list[ET.Element]]]:
    """Each row of the terminal as a reader sees it, and its spans, top to bottom: rich draws a
    span at its column (x / the cell's width) and leaves out the spans of spaces alone."""
    spans: dict[int, list[ET.Element]] = {}
    for text in parse(svg).iter(f"{SVG}text"):
        clip = re.fullmatch(r"url\(#demo-line-(\d+)\)", text.get("clip-path", ""))
        if clip:
            spans.setdefault(int(clip[1]), []).append(text)
    prompt = spans[0][0]  # "$ "
    cell = float(prompt.get("textLength", "0")) / len(prompt.text or "")
    out = []
    for row in sorted(spans):
        placed = sorted(spans[row], key=lambda t: float(t.get("x", "0")))
        line = ""
        for span in placed:
            column = round(float(span.get("x", "0")) / cell)
            line += " " * (column - cells(line)) + (span.text or "").replace("\xa0", " ")
        out.append((line.rstrip(), placed))
    return out


def draw(tool: ModuleType, texts: list[str], **kwargs: object) -> str:
    lines = [tool.Line(0.5 + i / 10, text) for i, text in enumerate(texts)]
    svg: str = tool.render(COMMAND, lines, **kwargs)
    return svg


def test_the_story_is_drawn_under_the_command_with_its_time_dimmed(tool: ModuleType) -> None:
    story = [
        stamp(0.3, "issue #1 “Add a subtract function” is filed by bob"),
        stamp(12.5, "the orchestrator picks up issue #1 (👀)"),
        "",
        "Done in 13.0s: #3 “Add a subtract function” is squash-merged into main",
        "The sandbox is removed (`demo --keep` keeps it).",
    ]
    svg = draw(tool, story)
    root = parse(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("width") == str(tool.WIDTH_PX)
    titles = [t.text for t in root.iter(f"{SVG}text") if "title" in t.get("class", "")]
    assert titles == ["claude-orchestrator\xa0demo"]  # rich draws spaces as no-break spaces

    shown = rows(svg)
    assert [text for text, _ in shown] == [f"$ {COMMAND}", *story, ""]  # and room under it

    style = root.find(f"{SVG}style")
    assert style is not None and style.text is not None
    rules = dict(re.findall(r"\.(demo-r\d+) \{ ([^}]*) \}", style.text))
    time_span, text_span = shown[1][1][:2]
    assert (time_span.text or "").strip() == "0.3s"
    assert rules[time_span.get("class", "")] != rules[text_span.get("class", "")]
    assert "font-weight: bold" in rules[shown[4][1][0].get("class", "")]  # "Done in ..."


def test_markup_and_control_characters_are_text(tool: ModuleType) -> None:
    line = stamp(1.0, "a <b>&amp; \"c\" 'd' ]]> \x07bell \x1b[31mred\x1b[0m\ttab")
    svg = draw(tool, [line])
    text = rows(svg)[1][0]
    assert "<b>&amp; \"c\" 'd' ]]>" in text
    assert "\ufffdbell red" in text
    assert "\x1b" not in svg and "\x07" not in svg
    assert "<b>" not in svg  # escaped in the file, not an element


def test_a_long_line_is_cut_with_an_ellipsis(tool: ModuleType) -> None:
    long = stamp(2.0, "word " * 60 + "END")
    svg = draw(tool, [long, "short"], columns=80)
    (text, _), (short, _) = rows(svg)[1:3]
    assert text.endswith("…")
    assert "END" not in text
    assert len(long) > 80 == cells(text)
    assert short == "short"


def test_nothing_is_fetched_and_the_replay_is_optional(tool: ModuleType) -> None:
    lines = [stamp(0.5, "one"), stamp(1.5, "two"), "Done"]
    animated, still = draw(tool, lines), draw(tool, lines, animate=False)
    for svg in (animated, still):
        assert "@font-face" not in svg and "<script" not in svg
        assert (
            re.findall(r"(?:url\((?!#)|href=|https?://(?!www\.w3\.org|www\.textualize))", svg) == []
        )
    assert "@keyframes" in animated and "prefers-reduced-motion" in animated
    assert "@keyframes" not in still and "demo-cover" not in still
    # Unanimated, the cover sits below the window: a viewer without CSS animation sees it all.
    cover = next(r for r in parse(animated).iter(f"{SVG}rect") if "cover" in r.get("class", ""))
    clip = parse(animated).find(f".//{SVG}clipPath[@id='demo-clip-terminal']/{SVG}rect")
    assert clip is not None
    assert float(cover.get("y", 0)) >= float(clip.get("height", 0))
