"""The README and the manual (docs/*.md) run as written.

1. Every `srkd ...` command line in their bash blocks names a real command and real options with
   valid values: it is parsed by the CLI's own parser (click), without running it.
2. The blocks marked `<!-- readme-test: run -->` (the tiny tour) are run for real, in order, in one
   temporary folder per file, and must all exit 0.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
"""Every markdown file whose commands are checked."""
RUN_MARKER = "<!-- readme-test: run -->"
_FENCE = re.compile(r"^```(\w*)\s*$")


def bash_blocks(text: str) -> list[tuple[bool, list[str]]]:
    """(marked runnable, logical lines) of every ```bash block; `\\` continuations are joined."""
    blocks, lines, lang, marked, previous = [], None, "", False, ""
    for raw in text.splitlines():
        fence = _FENCE.match(raw.strip())
        if fence and lines is None:
            lines, lang, marked = [], fence.group(1), previous.strip() == RUN_MARKER
        elif fence:
            if lang == "bash":
                blocks.append((marked, _join_continuations(lines)))
            lines = None
        elif lines is not None:
            lines.append(raw)
        if raw.strip():
            previous = raw
    return blocks


def _join_continuations(lines: list[str]) -> list[str]:
    out, current = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    return [line.strip() for line in out if line.strip()]


def srkd_invocations(line: str) -> list[list[str]]:
    """The `srkd` argument lists in one shell line (after `&&` / `;`), comments and `$ ` prompts
    removed and `[optional]` groups dropped; `python -m cli` and `-m cli` count as `srkd`."""
    lexer = shlex.shlex(re.sub(r"\[[^\]]*\]", "", line.removeprefix("$ ")), posix=True,
                        punctuation_chars=";&|")
    lexer.whitespace_split = True  # punctuation (&&, ;, |) still splits; '#' starts a comment
    found, words = [], []
    for token in [*lexer, ";"]:
        if token not in (";", "&&", "||", "|", "&"):
            words.append(token)
            continue
        for i, word in enumerate(words):
            if word == "srkd" or (word == "cli" and i > 0 and words[i - 1] == "-m"):
                found.append(words[i + 1 :])
                break
        words = []
    return found


def _blocks(page: Path) -> list[tuple[bool, list[str]]]:
    return bash_blocks(page.read_text(encoding="utf-8"))


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_the_pages_have_commands_and_a_runnable_tour():
    assert len(DOCS) >= 10, f"the manual's pages are missing from {ROOT / 'docs'}"
    readme = [c for _, lines in _blocks(README) for line in lines for c in srkd_invocations(line)]
    assert len(readme) >= 5, "the README's bash blocks should show the commands"
    blocks = [block for page in PAGES for block in _blocks(page)]
    commands = [c for _, lines in blocks for line in lines for c in srkd_invocations(line)]
    assert len(commands) >= 40, "the README and docs/ should show the commands"
    assert any(marked for marked, _ in blocks), f"no block is marked {RUN_MARKER}"


def _parse(group, args: list[str]) -> None:
    """Parse `args` like the shell would hand them to `srkd`, resolving sub-commands; raises
    the CLI's usage error (typer's own click: UsageError, NoSuchOption, BadParameter) for an
    unknown command, option or value."""
    ctx = group.make_context("srkd", list(args), resilient_parsing=False)
    command, rest = group, _remaining(ctx)
    while hasattr(command, "resolve_command") and rest:
        name, sub, rest = command.resolve_command(ctx, rest)
        ctx = sub.make_context(name, rest, parent=ctx, resilient_parsing=False)
        command, rest = sub, _remaining(ctx)


def _remaining(ctx) -> list[str]:
    """The arguments a group left for its sub-command (click >= 8.2 keeps the command name in
    `_protected_args`)."""
    return [*getattr(ctx, "_protected_args", []), *ctx.args]


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_command_parses(page: Path):
    import cli

    group = typer.main.get_command(cli.app)
    bad = []
    for _, lines in _blocks(page):
        for line in lines:
            for args in srkd_invocations(line):
                args = [a for a in args if a != "--help"]  # help exits; check the rest
                if not args or args[0] == "--version":
                    continue
                try:
                    _parse(group, args)
                except Exception as e:  # the CLI's usage errors all have format_message
                    if not hasattr(e, "format_message"):
                        raise
                    bad.append(f"`srkd {shlex.join(args)}`: {e.format_message()}")
    assert not bad, f"{_name(page)}: commands the CLI refuses:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("srkd run --stage distill   # a comment", [["run", "--stage", "distill"]]),
        ("$ srkd distill", [["distill"]]),
        ("pip install -e . && srkd run", [["run"]]),
        ("srkd prepare scannet --raw R [--splits train,val]", [["prepare", "scannet", "--raw", "R"]]),
        ("torchrun --nproc-per-node 4 -m cli distill --out r", [["distill", "--out", "r"]]),
        ("pytest -q", []),
    ],
)
def test_invocations_are_found(line, expected):
    assert srkd_invocations(line) == expected


def test_a_wrong_option_is_caught():
    import cli

    group = typer.main.get_command(cli.app)
    with pytest.raises(Exception, match="No such option: --no-such-option"):
        _parse(group, ["evaluate", "--no-such-option", "1"])
    with pytest.raises(Exception, match="No such command 'no-such-command'"):
        _parse(group, ["no-such-command"])
    with pytest.raises(Exception, match="'gpu' is not a device"):
        _parse(group, ["evaluate", "--device", "gpu"])


TOURS = [page for page in PAGES if any(marked for marked, _ in _blocks(page))]


@pytest.mark.slow  # a page's tour runs srkd's commands on tiny data: tens of seconds
@pytest.mark.parametrize("page", TOURS, ids=_name)
def test_the_tour_runs_as_written(page: Path, tmp_path, monkeypatch):
    """A page's marked blocks, command by command, from a copy of the repository root
    (stages.yaml and the shipped teacher linked in), in one process; every command must exit 0."""
    from typer.testing import CliRunner

    import cli

    repo = ROOT
    (tmp_path / "srkd" / "assets").mkdir(parents=True)
    (tmp_path / "srkd" / "assets" / "demo_teacher.pt").symlink_to(repo / "srkd/assets/demo_teacher.pt")
    (tmp_path / "stages.yaml").symlink_to(repo / "stages.yaml")
    monkeypatch.chdir(tmp_path)
    commands = [args for marked, lines in _blocks(page) if marked
                for line in lines for args in srkd_invocations(line)]  # fmt: skip
    assert commands
    for args in commands:
        result = CliRunner().invoke(cli.app, args)
        assert result.exit_code == 0, f"{_name(page)}: `srkd {shlex.join(args)}` failed:\n{result.output}"
    if page.name == "getting-started.md":  # the tour of every command leaves each stage's files
        assert (tmp_path / "tour/labels/synthetic_0002.labels.npy").is_file()
        assert (tmp_path / "tour/student/curves.png").is_file()
