"""The user-facing documents stay honest: a short README, commands and scripts that exist, links that resolve, and no
tracker references (issue numbers) in what users read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from modeling_petct.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
GUIDES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTS = [*GUIDES, ROOT / "BENCHMARKS.md"]
TRACKER = re.compile(r"\bissues? ?#?\d+", re.I)


def _names(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def test_readme_is_a_short_guide():
    assert (ROOT / "README.md").stat().st_size < 15_000


@pytest.mark.parametrize("doc", DOCUMENTS, ids=_names(DOCUMENTS))
def test_every_petct_command_named_exists(doc):
    named = set(re.findall(r"(?<![\w.-])petct ([a-z][\w-]*)", doc.read_text()))
    commands = {c.replace("_", "-") for c in COMMANDS}  # modules are named after their command, "-" as "_"
    assert named <= commands, f"{doc.name} names unknown commands: {sorted(named - commands)}"


@pytest.mark.parametrize("doc", DOCUMENTS, ids=_names(DOCUMENTS))
def test_every_script_named_exists(doc):
    scripts = set(re.findall(r"\b((?:benchmarks|hub_scripts|demo)/\w+\.py|train_\w+\.py)", doc.read_text()))
    assert {s for s in scripts if not (ROOT / s).is_file()} == set()


@pytest.mark.parametrize("doc", DOCUMENTS, ids=_names(DOCUMENTS))
def test_relative_links_resolve(doc):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
        assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_benchmarks_name_a_script_for_their_figures():
    text = (ROOT / "BENCHMARKS.md").read_text()
    assert "/tmp/" not in text  # every figure's command is in the repository
    for section in text.split("\n## ")[1:]:
        assert re.search(r"benchmarks/\w+\.py|petct \w+|make \w+", section), section.splitlines()[0]


@pytest.mark.parametrize("doc", DOCUMENTS, ids=_names(DOCUMENTS))
def test_no_tracker_references_in_documents(doc):
    assert TRACKER.findall(doc.read_text()) == []


def test_no_tracker_references_in_cli_help():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0]  # argparse keeps the sub-parsers only here
    texts = [parser.description or "", *(action.help or "" for action in sub._choices_actions)]
    for command in sub.choices.values():
        texts += [command.description or "", *(action.help or "" for action in command._actions)]
    assert [t for t in texts if TRACKER.search(t)] == []


def test_no_tracker_references_in_the_packages_strings():
    """Help, report and card templates, messages and docstrings: every string literal of the shipped code."""
    sources = [*(ROOT / "modeling_petct").rglob("*.py"), *(ROOT / "hub_scripts").glob("*.py"),
               *(ROOT / "benchmarks").glob("*.py"), *ROOT.glob("train_*.py")]
    found = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in sources
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and TRACKER.search(node.value)]
    assert found == []


def _options() -> dict[str, set[str]]:
    """Every option string each command accepts: argparse's, or the training dataclasses' for the commands that hand
    their flags on (HfArgumentParser gives each field a dashed and an underscored spelling)."""
    from transformers import HfArgumentParser

    from modeling_petct.experiments.study import PER_CELL, StudyGrid, _without_per_cell
    from modeling_petct.training import mae, segmentation

    sub = build_parser()._subparsers._group_actions[0].choices
    options = {name: set(parser._option_string_actions) for name, parser in sub.items()}
    for names, types in ((("pretrain", "train_mae.py"), mae.ARGUMENTS),
                         (("finetune", "train_seg.py"), segmentation.ARGUMENTS),
                         (("study",), (StudyGrid, *map(_without_per_cell, PER_CELL)))):
        strings = set(HfArgumentParser(types)._option_string_actions)
        options.update(dict.fromkeys(names, strings))
    return options


def test_every_flag_shown_on_a_command_line_exists():
    options = _options()
    command = re.compile(r"(?<![\w.-])(?:petct ([a-z][a-z-]*)|(train_mae\.py|train_seg\.py))([^\n`#]*)")
    unknown = []
    for doc in DOCUMENTS:
        for name, script, rest in command.findall(doc.read_text().replace("\\\n", " ")):
            known = options.get(name or script, set())
            unknown += [f"{doc.name}: {name or script} {flag}" for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest)
                        if flag not in known]
    assert unknown == []


def test_the_quickstart_budgets_are_told_from_budgets():
    """Each budget's cohort, steps and seeds live in BUDGETS: docs/quickstart.md and `--budget`'s help give its line."""
    from modeling_petct.experiments.quickstart import BUDGETS

    offered = {name: budget for name, budget in BUDGETS.items() if name != "tiny"}  # tiny is --tiny
    flag = build_parser()._subparsers._group_actions[0].choices["quickstart"]._option_string_actions["--budget"]
    doc = " ".join((ROOT / "docs" / "quickstart.md").read_text().split())
    assert list(flag.choices) == list(offered)
    for name, budget in offered.items():
        assert f"{name}: {budget.summary()}" in flag.help.replace("%%", "%").replace(" (default)", "")
        assert f"- `{name}`" in doc and budget.summary() in doc, name


@pytest.mark.parametrize("doc", DOCUMENTS, ids=_names(DOCUMENTS))
def test_the_backbone_pin_shown_is_the_packages(doc):
    from modeling_petct.models.backbones import DNA_REQUIREMENT

    shown = re.findall(r"dynamic-network-architectures\s*[=<>!~][^\s\"'`]*", doc.read_text())
    assert set(shown) <= {DNA_REQUIREMENT}, doc.name


@pytest.mark.parametrize("doc", GUIDES, ids=_names(GUIDES))
def test_the_false_positive_penalty_shown_is_the_selections(doc):
    from modeling_petct.training.results import FP_PENALTY

    shown = re.findall(r"less (\d*\.\d+) per false-positive", " ".join(doc.read_text().split()))
    assert {float(v) for v in shown} <= {FP_PENALTY}, doc.name
