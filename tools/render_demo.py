"""Draw the demo for the README: docs/demo.svg, a terminal window showing a run of `demo`.

    python tools/render_demo.py                   # run the demo (~10 s), rewrite docs/demo.svg
    python tools/render_demo.py --static          # the same picture without the replay
    python tools/render_demo.py --output /tmp/demo.svg --columns 100

Run it with the project's virtualenv active: it runs `python -m scripts.orchestrator.main demo`
with this Python, as a user would (the fake GitHub and the scripted model, nothing leaves the
machine), keeps each line of its output with the time it came, and draws the lines with rich's
SVG export (`pip install -e ".[picture]"`): the command at the top, the story with its time
column dimmed, the closing summary; a line too long for the window ends in an ellipsis. The
picture uses the viewer's own monospace font (no web font, no script, so GitHub shows it) and
replays the run at the pace it came, in a loop, with a CSS animation (one moving rectangle); a
viewer without animations, or one asking for reduced motion, sees the whole run. A demo that
fails or takes longer than --timeout leaves the picture as it was.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # imported where used: without rich, main() says how to get it
    from rich.text import Text

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "demo.svg"
DEMO = ("-m", "scripts.orchestrator.main", "demo")
TITLE = "claude-orchestrator demo"
COLUMNS = 110  # characters a line; longer lines are cut with "…"
WIDTH_PX = 900  # the picture's width on the page (GitHub's README column is about that)
TIMEOUT = 120.0  # seconds; the demo takes about 10 on an idle machine
HOLD = 6.0  # seconds the finished run stays on screen before the replay starts again
# GitHub's own code font stack: each viewer's monospace font, nothing to download.
FONTS = 'ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace'
TITLE_FONTS = '-apple-system, BlinkMacSystemFont, "Segoe UI", Helvetica, Arial, sans-serif'
FONT_ASPECT = 0.6  # width / height of those fonts' cells (rich places every span to the cell)

STAMP = re.compile(r"^\s*\d+(?:\.\d+)?s  ")  # a story line's time column (story.stamp)
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# Shown in colour wherever they appear: issue and pull request numbers, `commands`, “quotes”.
HIGHLIGHTS = ((r"#\d+", "cyan"), (r"`[^`]*`", "yellow"), (r"“[^”]*”", "green"))

# rich's SVG template (rich.console.CONSOLE_SVG_FORMAT, whose placeholders `code_format`
# documents) without its @font-face rules: they fetch Fira Code from a CDN, which an image on
# GitHub may not do; and with xml:space="preserve" on the text, as librsvg otherwise drops a
# span's leading spaces. Single braces are this script's, filled before rich fills the doubled ones.
TEMPLATE = """\
<svg class="rich-terminal" width="{svg_width}" height="{svg_height}" \
viewBox="0 0 {{width}} {{height}}" xmlns="http://www.w3.org/2000/svg">
    <!-- Drawn by tools/render_demo.py with Rich https://www.textualize.io -->
    <style>
    .{{unique_id}}-matrix {{{{
        font-family: {fonts};
        font-size: {{char_height}}px;
        line-height: {{line_height}}px;
        font-variant-east-asian: full-width;
    }}}}
    .{{unique_id}}-title {{{{
        font-size: 18px;
        font-weight: bold;
        font-family: {title_fonts};
    }}}}
    {{styles}}
    {animation}
    </style>
    <defs>
    <clipPath id="{{unique_id}}-clip-terminal">
      <rect x="0" y="0" width="{{terminal_width}}" height="{{terminal_height}}" />
    </clipPath>
    {{lines}}
    </defs>
    {{chrome}}
    <g transform="translate({{terminal_x}}, {{terminal_y}})" \
clip-path="url(#{{unique_id}}-clip-terminal)">
    {{backgrounds}}
    <g class="{{unique_id}}-matrix" xml:space="preserve">
    {{matrix}}
    </g>
    {cover}
    </g>
</svg>
"""
UNIQUE_ID = "demo"


class Line(NamedTuple):
    """A line of the demo's output and when it came, in seconds after the demo started."""

    at: float
    text: str


def capture(command: Sequence[str], timeout: float) -> tuple[int, list[Line], str]:
    """Run `command` in the repository; its exit status, stdout's lines as they came, stderr."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", NO_COLOR="1")
    lines: list[Line] = []
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as err:
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,  # its own group, so a timeout ends all it started
        )
        assert process.stdout is not None
        stdout = process.stdout

        def read() -> None:
            for raw in stdout:
                lines.append(Line(time.monotonic() - started, raw.rstrip("\r\n")))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(process)
            status = -1
            print(f"render_demo: the demo took over {timeout:g} s; stopped", file=sys.stderr)
        except KeyboardInterrupt:  # the demo is in a session of its own: Ctrl-C missed it
            stop(process)
            raise
        reader.join(timeout=5)
        err.seek(0)
        return status, lines, err.read()


def stop(process: subprocess.Popen[str]) -> None:
    """SIGINT (the demo cleans up as after Ctrl-C), then SIGKILL, to the demo's group."""
    for sig, grace in ((signal.SIGINT, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=grace)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def clean(text: str) -> str:
    """`text` as a terminal shows it, fit for XML: colour codes dropped, tabs expanded, other
    control characters (which XML cannot hold even escaped) as U+FFFD."""
    text = ANSI.sub("", text).expandtabs(8)
    return "".join(
        "\ufffd" if (unicodedata.category(c) == "Cc" or c in "\ufffe\uffff") else c for c in text
    )


def styled(text: str, *, summary: bool) -> Text:
    from rich.style import Style
    from rich.text import Text

    line = Text(clean(text))
    stamp = STAMP.match(line.plain)
    if stamp:
        line.stylize("dim", 0, stamp.end())
    if summary:
        line.stylize("bold")
    for pattern, style in HIGHLIGHTS:
        line.highlight_regex(pattern, style)
    # A wide character (an emoji) in a span of its own: rich sizes a span's text by its
    # characters, not its cells, and would squeeze the rest of the span into one cell less.
    for index, char in enumerate(line.plain):
        if unicodedata.east_asian_width(char) in "WF":
            line.stylize(Style(italic=False), index, index + 1)
    return line


def keyframes(rows: Sequence[float], line_height: float, height: float, hold: float) -> str:
    """CSS moving a rectangle, the window's colour, off the rows as they came: row i shows
    at rows[i] seconds. It sits below the window when not animated, so all is seen."""
    cycle = rows[-1] + hold
    stops = []
    for index, at in enumerate(rows):
        if index + 1 < len(rows) and rows[index + 1] - at < 0.005:
            continue  # the next row comes with this one
        top = (index + 1) * line_height + 1.5 - height if index + 1 < len(rows) else 0.0
        stops.append(f"{100 * at / cycle:.3f}% {{ transform: translateY({top:.1f}px); }}")
    stops.append("100% { transform: translateY(0px); }")
    name = f"{UNIQUE_ID}-replay"
    return "\n    ".join(
        [
            f".{UNIQUE_ID}-cover {{ animation: {name} {cycle:.2f}s step-end infinite; }}",
            "@media (prefers-reduced-motion: reduce) {",
            f"    .{UNIQUE_ID}-cover {{ animation: none; }}",
            "}",
            f"@keyframes {name} {{",
            *(f"    {stop}" for stop in stops),
            "}",
        ]
    )


def render(
    command: str,
    lines: Sequence[Line],
    *,
    columns: int = COLUMNS,
    width_px: int = WIDTH_PX,
    animate: bool = True,
    hold: float = HOLD,
) -> str:
    """The SVG of a terminal that ran `command` and printed `lines`."""
    from rich.console import Console
    from rich.terminal_theme import SVG_EXPORT_THEME
    from rich.text import Text

    console = Console(
        record=True,
        width=columns,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        legacy_windows=False,
        highlight=False,
        emoji=False,
        markup=False,
    )
    texts = [Text.assemble(("$ ", "bold green"), (clean(command), "bold"))]
    last_story = max((i for i, line in enumerate(lines) if STAMP.match(line.text)), default=-1)
    done = next((i for i, line in enumerate(lines) if i > last_story and line.text.strip()), -1)
    texts += [styled(line.text, summary=i == done) for i, line in enumerate(lines)]
    texts.append(Text(""))  # room under the last line (rich gives its last row no clip path)
    for text in texts:
        console.print(text, no_wrap=True, overflow="ellipsis", crop=True)

    def export(code_format: str, clear: bool) -> str:
        return console.export_svg(
            title=TITLE,
            theme=SVG_EXPORT_THEME,
            clear=clear,
            code_format=code_format,
            font_aspect_ratio=FONT_ASPECT,
            unique_id=UNIQUE_ID,
        )

    # rich's measures, through its own placeholders, to place the cover and size the picture.
    measures = export("{line_height} {terminal_height} {width} {height}", clear=False)
    line_height, terminal_height, width, height = (float(v) for v in measures.split())
    animation = cover = ""
    if animate:
        rows = [0.0] + [line.at for line in lines] + [lines[-1].at if lines else 0.0]
        animation = keyframes(rows, line_height, terminal_height, hold)
        cover = (
            f'<rect class="{UNIQUE_ID}-cover" x="0" y="{terminal_height:g}" '
            f'width="{width:g}" height="{terminal_height:g}" '
            f'fill="{SVG_EXPORT_THEME.background_color.hex}"/>'
        )
    template = TEMPLATE.format(
        svg_width=width_px,
        svg_height=round(height * width_px / width),
        fonts=FONTS,
        title_fonts=TITLE_FONTS,
        animation=_braces(animation),
        cover=_braces(cover),
    )
    return export(template, clear=True)


def _braces(text: str) -> str:
    """`text` through str.format unchanged (rich formats the template)."""
    return text.replace("{", "{{").replace("}", "}}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default: %(default)s")
    parser.add_argument("--columns", type=int, default=COLUMNS, help="default: %(default)s")
    parser.add_argument("--width", type=int, default=WIDTH_PX, help="pixels, default: %(default)s")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help="default: %(default)s")
    parser.add_argument("--static", action="store_true", help="no replay animation")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("rich") is None:
        print('render_demo needs rich: pip install -e ".[picture]"', file=sys.stderr)
        return 2
    started = time.monotonic()
    status, lines, errors = capture([sys.executable, *DEMO], args.timeout)
    if status != 0:
        sys.stderr.write("".join(f"{line.text}\n" for line in lines) + errors)
        print(f"render_demo: the demo failed (exit {status}); picture unchanged", file=sys.stderr)
        return 1
    svg = render(
        " ".join(("python", *DEMO)),
        lines,
        columns=args.columns,
        width_px=args.width,
        animate=not args.static,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(svg, encoding="utf-8")
    shown = args.output.resolve()
    shown_path = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
    print(
        f"wrote {shown_path} ({len(lines)} lines, {len(svg) // 1024} KiB) "
        f"in {time.monotonic() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
