"""The demo's scene: a sample repository, its people, their issue and pull request, the model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .model_script import Step, Text, ToolCall, ToolCalls, bash

OWNER = "acme"
REPO = "calc"
MAINTAINER = "alice"  # may write: labels the issue ready, reviews, asks for the merge
REPORTER = "bob"  # files the issue; no permission of his own
CONTRIBUTOR = "dave"  # opens a pull request from a branch of the repository

CALC = '''"""Arithmetic helpers."""


def add(a: int, b: int) -> int:
    """Return the sum of a and b."""
    return a + b
'''

TESTS = """import unittest

from calc import add


class CalcTest(unittest.TestCase):
    def test_add(self) -> None:
        self.assertEqual(add(2, 3), 5)


if __name__ == "__main__":
    unittest.main()
"""

# unittest classes, so the checks run with pytest where it is installed and with unittest
# where it is not; .gitignore, so the bytecode the tests leave behind is not committed.
SAMPLE_PROJECT: dict[str, str] = {
    "README.md": "# calc\n\nSmall arithmetic helpers, with tests: `python -m pytest`.\n",
    ".gitignore": "__pycache__/\n*.pyc\n",
    "calc.py": CALC,
    "test_calc.py": TESTS,
}

SUBTRACT = '''

def subtract(a: int, b: int) -> int:
    """Return a minus b."""
    return a - b
'''

SUBTRACTED = CALC.replace("    return a + b\n", "    return a + b\n" + SUBTRACT)  # the issue done
DOCSTRING = '    """Return a minus b."""\n'
NEGATIVE = '    """Return a minus b, which is negative when b is greater than a."""\n'
ANSWERED = SUBTRACTED.replace(DOCSTRING, NEGATIVE)  # once the review asking for it is answered


@dataclass(frozen=True)
class Issue:
    title: str
    body: str


@dataclass(frozen=True)
class Contribution:
    """A person's pull request: a branch of the repository with their change."""

    branch: str
    title: str
    body: str
    files: Mapping[str, str]


ISSUE = Issue(
    title="Add a subtract function",
    body=(
        "`calc.py` can add but not subtract. Please add `subtract(a, b)` next to `add`, "
        "typed like it, with a test in `test_calc.py` (a `unittest` test case, like the "
        "others)."
    ),
)

CONTRIBUTION = Contribution(
    branch="multiply",
    title="Add a multiply function",
    body="Adds `multiply(a, b)` to calc.py, with a test.",
    files={
        "calc.py": CALC + '\n\ndef multiply(a: int, b: int) -> int:\n    """Return a times b."""\n'
        "    return a * b\n",
        "test_calc.py": TESTS.replace("import add", "import add, multiply").replace(
            "        self.assertEqual(add(2, 3), 5)\n",
            "        self.assertEqual(add(2, 3), 5)\n\n"
            "    def test_multiply(self) -> None:\n"
            "        self.assertEqual(multiply(4, 3), 12)\n",
        ),
    },
)


@dataclass(frozen=True)
class Review:
    """A writer's review asking for changes, with one comment on a line of the diff."""

    body: str
    path: str
    line: int
    comment: str


CHANGES = Review(
    body="Nearly there; one thing first.",
    path="calc.py",
    line=SUBTRACTED.splitlines().index("def subtract(a: int, b: int) -> int:") + 1,
    comment="Say in the docstring that the result may be negative.",
)


def implement_marker(number: int) -> str:
    """What the orchestrator's implementation prompt for issue `number` says."""
    return f"Implement GitHub issue #{number}"


def review_marker(number: int) -> str:
    """What its review prompt for pull request `number` says (the space keeps #2 from #23)."""
    return f"Review pull request #{number} "


def followup_marker(number: int) -> str:
    """What its prompt for more work on pull request `number` says (the comma: not #30)."""
    return f"You are continuing work on pull request #{number},"


def implement_script(test_command: str) -> list[Step]:
    """Claude's turns on the issue: read the code, change it, run the tests, sum up."""
    tests = TESTS.replace("import add", "import add, subtract").replace(
        "        self.assertEqual(add(2, 3), 5)\n",
        "        self.assertEqual(add(2, 3), 5)\n\n"
        "    def test_subtract(self) -> None:\n"
        "        self.assertEqual(subtract(5, 3), 2)\n",
    )
    return [
        ToolCalls(
            (
                ToolCall("Read", {"file_path": "calc.py"}),
                ToolCall("Read", {"file_path": "test_calc.py"}),
            ),
            text="I'll read the code and its tests first.",
        ),
        ToolCalls(
            (
                ToolCall(
                    "Edit",
                    {
                        "file_path": "calc.py",
                        "old_string": "    return a + b\n",
                        "new_string": "    return a + b\n" + SUBTRACT,
                    },
                ),
                ToolCall("Write", {"file_path": "test_calc.py", "content": tests}),
            )
        ),
        bash(test_command, "Run the tests"),
        Text(
            "Added `subtract(a, b)` to `calc.py`, typed like `add`, and a `test_subtract` "
            "case to `test_calc.py`. The tests pass."
        ),
    ]


def followup_script() -> list[Step]:
    """Claude's turns on the review asking for changes: read the code (the CLI edits only a
    file read before), change the docstring as asked, sum up. No `Replies` section: the review
    comment's ID is not known when the scripts are made, so the reply in its thread is the
    orchestrator's own."""
    return [
        ToolCall("Read", {"file_path": "calc.py"}),
        ToolCall(
            "Edit",
            {"file_path": "calc.py", "old_string": DOCSTRING, "new_string": NEGATIVE},
        ),
        Text(
            "Said in the docstring of `subtract` that the result is negative when `b` is "
            "greater than `a`, as the review asked."
        ),
    ]


TYPED_LIKE_THE_REST = "the new function is typed, documented and tested like the rest of `calc.py`"


def review_script(summary: str, findings: str = TYPED_LIKE_THE_REST) -> list[Step]:
    """Claude's turns reviewing a pull request: read the code, then write the review."""
    return [
        ToolCall("Read", {"file_path": "calc.py"}),
        Text(
            f"## Summary\n{summary}\n\n## Findings\nNo findings: {findings}.\n\n"
            "## Verdict\nVERDICT: COMMENT"
        ),
    ]


def model_scripts(
    issue: int, contribution: int, ours: int, test_command: str
) -> dict[str, tuple[str, list[Step]]]:
    """For each Claude run of the story, its prompt's marker: what it is for, and its turns.
    `ours` is the pull request the orchestrator will open for `issue`; it is reviewed twice
    (its first head, then the head that answers the review asking for changes), and each new
    conversation of a marker takes the next of its turns."""
    subtracts = f"Adds `subtract(a, b)` to `calc.py`, with a test, as #{issue} asks"
    return {
        implement_marker(issue): (f"issue #{issue}", implement_script(test_command)),
        review_marker(contribution): (
            f"review of #{contribution}",
            review_script("Adds `multiply(a, b)` to `calc.py`, with a test."),
        ),
        review_marker(ours): (
            f"review of #{ours}",
            [
                *review_script(f"{subtracts}."),
                *review_script(
                    f"{subtracts}; its docstring now says the result may be negative, as the "
                    "review asked.",
                    "the docstring says what the review asked, and the tests still cover it",
                ),
            ],
        ),
        followup_marker(ours): (f"follow-up on #{ours}", followup_script()),
    }
