"""A Hub user's clean environment without building a venv (no network in tests): a folder of symlinks to exactly the
distributions that a model card's ``pip install`` lines would bring in, dependencies followed as pip would (none
after ``--no-deps``), for ``python -I -S`` with that folder as its only site directory. petct-fm itself, and anything
the lines do not name, cannot be imported there.
"""

from __future__ import annotations

import importlib.metadata as metadata
import shlex
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def install_requirements(lines: list[str]) -> list[tuple[Requirement, bool]]:
    """(requirement, follow its dependencies) for every package of ``pip install ...`` lines."""
    found = []
    for line in lines:
        words = shlex.split(line)
        assert words[:2] == ["pip", "install"], line
        follow = "--no-deps" not in words
        found += [(Requirement(w), follow) for w in words[2:] if not w.startswith("-")]
    return found


def _dependencies(dist: metadata.Distribution) -> list[Requirement]:
    reqs = [Requirement(r) for r in dist.requires or []]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def distributions_for(lines: list[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions these lines install, each checked against the line's version specifier."""
    todo, found = install_requirements(lines), {}
    while todo:
        req, follow = todo.pop()
        name = canonicalize_name(req.name)
        if name in found:
            continue
        dist = metadata.distribution(req.name)
        assert req.specifier.contains(dist.version, prereleases=True), f"{req} but {dist.version} is installed"
        found[name] = dist
        if follow:
            todo += [(r, True) for r in _dependencies(dist)]
    return found


def clean_site(lines: list[str], dest: Path) -> Path:
    """``dest`` with a symlink per top-level file or package (and .dist-info) of those distributions."""
    dest.mkdir(parents=True, exist_ok=True)
    for dist in distributions_for(lines).values():
        root = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or []} - {"..", "__pycache__"}:
            link = dest / top
            if (root / top).exists() and not link.exists():
                link.symlink_to(root / top)
    return dest
