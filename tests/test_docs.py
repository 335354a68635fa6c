"""The commands of README.md and docs/*.md: every one parses, and the phantom walkthrough runs.

Every fenced ``bash``, ``sh`` or ``console`` block is preceded (on the line above, or with blank
lines between) by one of two HTML comments, which a rendered page does not show:

- ``<!-- runs-on-phantom -->``: the block is part of the phantom walkthrough. The blocks of the
  pages in :data:`WALKTHROUGH` run for real, in that order, in one scratch folder;
- ``<!-- not-run: REASON -->``: the block needs what a test machine lacks (MSSEG-2 data, GPUs,
  SLURM, minutes of training); REASON says which, and the page says it too.

Either way each command's program must be one of the toolkit's (or a plain shell utility), and its
arguments must parse with that program's own parser: a renamed flag fails here, not in a user's hands.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

import mslong.cli
from fusion.cli import evaluate_parser, reassemble_parser
from mslong.cli import build_parser as mslong_parser
from slicer.cli import build_parser as slicer_parser
from unext_long.cli import build_parser as unext_parser
from yolo_long.cli import _parser as yolo_long_parser

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Pages whose runs-on-phantom blocks make up the walkthrough, in the order they run.
WALKTHROUGH = ["docs/phantom.md", "docs/datasets.md", "docs/export.md", "docs/fusion.md", "docs/segment.md"]
WALKTHROUGH_SECONDS = 150  # the budget of the whole walkthrough, on two cores that other jobs share
README_MAX_LINES = 150

RUNS = "runs-on-phantom"
NOT_RUN = "not-run"
MARKER = re.compile(r"^<!--\s*(?P<kind>runs-on-phantom|not-run)\s*(?::\s*(?P<reason>.*?))?\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
SHELL_LANGS = {"bash", "sh", "console", "shell"}
# Plain utilities a walkthrough may use between the toolkit's commands.
SHELL = {"cd", "ls", "cat", "head", "tail", "mkdir", "cp", "rm", "echo", "printf", "sed", "grep", "basename"}
CLUSTER = {"sbatch", "srun", "squeue", "scancel", "sacct", "nvidia-smi"}
OPERATORS = {"&&", "||", ";", "|"}
REDIRECTS = {">", ">>", "<", "2>", "&>"}
SUBSTITUTION = re.compile(r"\$\([^()]*\)")
FENCED = re.compile(r"^```.*?^```", re.M | re.S)


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository
    line: int  # of the opening fence
    kind: str | None  # RUNS, NOT_RUN or None (unmarked)
    reason: str
    lang: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def shell_blocks(path: Path) -> list[Block]:
    """The fenced shell blocks of one page, with the marker above each."""
    lines = path.read_text().splitlines()
    blocks, index, marker = [], 0, None
    while index < len(lines):
        line = lines[index]
        found = MARKER.match(line.strip())
        fence = FENCE.match(line)
        if found:
            marker = found
        elif fence:
            end = next((j for j in range(index + 1, len(lines)) if lines[j].startswith("```")), len(lines))
            if fence["lang"] in SHELL_LANGS:
                blocks.append(
                    Block(
                        page=str(path.relative_to(REPO)),
                        line=index + 1,
                        kind=marker["kind"] if marker else None,
                        reason=(marker["reason"] or "") if marker else "",
                        lang=fence["lang"],
                        text="\n".join(lines[index + 1 : end]),
                    )
                )
            index, marker = end, None
        elif line.strip():
            marker = None
        index += 1
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in shell_blocks(page)]


def command_lines(block: Block) -> Iterator[str]:
    """One string per command line of a block (continuations joined, console prompts stripped)."""
    joined = block.text.replace("\\\n", " ")
    for line in joined.splitlines():
        line = line.strip()
        if block.lang == "console":
            if not line.startswith("$ "):
                continue  # output
            line = line[2:]
        if line and not line.startswith("#"):
            yield line


def simple_commands(line: str) -> Iterator[list[str]]:
    """The simple commands of one line: tokens split at ``&&``, ``|``, ``;``, without redirections."""
    lexer = shlex.shlex(SUBSTITUTION.sub("SUBSTITUTED", line), posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    command: list[str] = []
    tokens = iter(lexer)
    for token in tokens:
        if token in OPERATORS:
            if command:
                yield command
            command = []
        elif token in REDIRECTS:
            next(tokens, None)  # the file
        else:
            command.append(token)
    if command:
        yield command


def _parse(parser_factory: Callable, args: list[str]):
    try:
        return parser_factory().parse_args(args)
    except SystemExit as error:
        raise AssertionError(f"does not parse ({error})") from None


def _check_mslong(args: list[str]) -> None:
    parser = mslong_parser()
    parsed = _parse(lambda: parser, args)
    check_inputs = getattr(mslong.cli, "_check_segment_inputs", None)  # what main checks after parsing
    if parsed.command == "segment" and check_inputs is not None:
        try:
            check_inputs(parser, parsed)
        except SystemExit:
            raise AssertionError("mslong segment: -t1/-t2/-o, or --list with --out") from None


def _check_torchrun(args: list[str]) -> None:
    from torch.distributed.run import get_args_parser

    parsed = _parse(get_args_parser, args)
    assert parsed.module and parsed.training_script == "unext_long", "torchrun runs -m unext_long"
    _parse(unext_parser, parsed.training_script_args)


def _check_python(args: list[str]) -> None:
    if args[:2] == ["-m", "unext_long"]:
        _parse(unext_parser, args[2:])
        return
    assert args and args[0].startswith("benchmarks/"), "python runs -m unext_long or benchmarks/<script>.py"
    script = REPO / args[0]
    assert script.is_file(), f"{args[0]} does not exist"
    source = script.read_text()
    for flag in (a.split("=")[0] for a in args[1:] if a.startswith("--")):
        assert f'"{flag}"' in source, f"{args[0]} has no flag {flag}"


def _ultralytics_keys() -> set[str]:
    spec = importlib.util.find_spec("ultralytics")
    assert spec and spec.submodule_search_locations
    default = Path(next(iter(spec.submodule_search_locations))) / "cfg" / "default.yaml"
    return set(yaml.safe_load(default.read_text()))


def _check_yolo(args: list[str]) -> None:
    assert args[:1] == ["segment"], "yolo segment MODE key=value ..."
    assert len(args) > 1 and args[1] in {"train", "val", "predict", "export"}, (
        "yolo segment train|val|predict"
    )
    keys = _ultralytics_keys()
    for argument in args[2:]:
        key, equals, _ = argument.partition("=")
        assert equals and key in keys, f"{argument!r} is not an ultralytics key=value argument"


def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))


def _check_make(args: list[str]) -> None:
    targets = [a for a in args if "=" not in a]
    assert targets, "make TARGET"
    missing = set(targets) - _make_targets()
    assert not missing, f"the Makefile has no target {sorted(missing)}"


def _check_nnunet(program: str) -> None:
    assert (Path(sys.executable).parent / program).is_file(), f"nnunetv2 installs no {program}"


def check_command(tokens: list[str]) -> None:
    """Fail (AssertionError) unless ``tokens`` is a command of ours that parses."""
    while tokens and re.match(r"^[A-Za-z_]\w*=", tokens[0]):
        tokens = tokens[1:]  # VAR=value prefix
    if tokens[:1] == ["time"]:
        tokens = tokens[1:]
    assert tokens, "an empty command"
    program, args = tokens[0], tokens[1:]
    checks: dict[str, Callable[[list[str]], object]] = {
        "slicer": lambda a: _parse(slicer_parser, a),
        "reassemble": lambda a: _parse(reassemble_parser, a),
        "lesion-eval": lambda a: _parse(evaluate_parser, a),
        "unext-long": lambda a: _parse(unext_parser, a),
        "yolo-long": lambda a: _parse(yolo_long_parser, a),
        "mslong": _check_mslong,
        "torchrun": _check_torchrun,
        "python": _check_python,
        "yolo": _check_yolo,
        "make": _check_make,
    }
    if program in checks:
        checks[program](args)
    elif program.startswith("nnUNetv2_"):
        _check_nnunet(program)
    elif program == "export":
        assert all("=" in a for a in args), "export VAR=value only"
    else:
        assert program in SHELL | CLUSTER, f"{program!r} is not a command of the toolkit"


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.name for b in ALL_BLOCKS])
def test_every_command_parses(block: Block) -> None:
    assert block.kind is not None, (
        f"{block.name}: mark the block <!-- {RUNS} --> or <!-- {NOT_RUN}: why it cannot run in the tests -->"
    )
    if block.kind == NOT_RUN:
        assert block.reason, f"{block.name}: say why the block cannot run (<!-- not-run: REASON -->)"
    if block.kind == RUNS:
        assert block.page in WALKTHROUGH, f"{block.name}: add {block.page} to WALKTHROUGH in {__file__}"
    lines = list(command_lines(block))
    assert lines, f"{block.name}: an empty block"
    for line in lines:
        for tokens in simple_commands(line):
            try:
                check_command(tokens)
            except AssertionError as error:
                raise AssertionError(f"{block.name}: {line!r}: {error}") from None


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    readme = REPO / "README.md"
    assert len(readme.read_text().splitlines()) <= README_MAX_LINES
    first = next(b for b in ALL_BLOCKS if b.page == "README.md")
    commands = [" ".join(tokens) for line in command_lines(first) for tokens in simple_commands(line)]
    assert commands == ["make demo", "make test"]


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a page: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.*?)\s*$", FENCED.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_links_between_pages_resolve() -> None:
    for page in PAGES:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
            if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
                continue
            linked = page.parent / target if target else page
            where = f"{page.relative_to(REPO)} links to {target}{'#' + anchor if anchor else ''}"
            assert linked.exists(), f"{where}: no such file"
            if anchor and linked.suffix == ".md":
                assert anchor in _anchors(linked), f"{where}: no such heading"


def _walkthrough_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSLONG_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore"})
    return env


def test_phantom_walkthrough_runs(tmp_path: Path) -> None:
    blocks = sorted(
        (b for b in ALL_BLOCKS if b.kind == RUNS),
        key=lambda b: (WALKTHROUGH.index(b.page) if b.page in WALKTHROUGH else len(WALKTHROUGH), b.line),
    )
    assert {b.page for b in blocks} == set(WALKTHROUGH), "every walkthrough page holds a runnable block"
    started, env = time.perf_counter(), _walkthrough_env()
    for block in blocks:
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block.text],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=WALKTHROUGH_SECONDS,
        )
        assert result.returncode == 0, (
            f"{block.name} failed:\n{block.text}\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
        )
    seconds = time.perf_counter() - started
    assert seconds < WALKTHROUGH_SECONDS, f"the walkthrough took {seconds:.0f} s"
    # What docs/segment.md and docs/fusion.md say of it: the lesion table beside the mask, and an
    # export's own masks, reassembled, scoring perfectly.
    assert (tmp_path / "case000_lesions.csv").is_file()
    metrics = pd.read_csv(tmp_path / "eval" / "metrics.csv", dtype={"case": str})
    consensus = metrics[metrics["reference"] == "consensus"]
    assert (
        len(consensus)
        and (consensus["f1"].dropna() == 1.0).all()
        and (consensus["dice"].dropna() == 1.0).all()
    )
