"""A Dockerfile read as Docker reads it, for tests that check an image without building it.

Instructions have their continuation lines joined and comments dropped; each stage knows its
ENV, its USER, its WORKDIR at every step, and which paths its COPY and RUN lines create
(``COPY``/``ADD`` destinations, ``ln -s`` links and ``mkdir`` folders), which is all the image
tests need: no engine runs here.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str
    workdir: str  # the WORKDIR in force for this instruction


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    @property
    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for text in self.args("ENV"):
            words = shlex.split(text)
            if words and "=" not in words[0]:  # legacy form: ENV KEY value
                values[words[0]] = " ".join(words[1:])
                continue
            values.update(word.split("=", 1) for word in words)
        return values

    @property
    def workdir(self) -> str:
        return self.instructions[-1].workdir if self.instructions else "/"

    @property
    def user(self) -> str:
        users = self.args("USER")
        return users[-1] if users else "root"

    def exec_form(self, keyword: str) -> list[str] | None:
        """ENTRYPOINT or CMD in exec form (a JSON list); None when absent or in shell form."""
        given = self.args(keyword)
        if not given:
            return None
        try:
            value = json.loads(given[-1])
        except ValueError:
            return None
        return value if isinstance(value, list) else None

    @property
    def run_text(self) -> str:
        return "\n".join(self.args("RUN"))

    def copies(self) -> list[tuple[str | None, list[str], str]]:
        """(stage or None for the build context, sources, absolute destination) per COPY/ADD."""
        out = []
        for ins in self.instructions:
            if ins.keyword not in ("COPY", "ADD"):
                continue
            words = shlex.split(ins.args)
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            source = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            dest = posixpath.normpath(posixpath.join(ins.workdir, paths[-1]))
            out.append((source, paths[:-1], dest + "/" if paths[-1].endswith("/") else dest))
        return out

    def links(self) -> dict[str, str]:
        """Symbolic links ``ln -s[f] TARGET NAME`` with literal absolute paths made by RUN lines:
        name -> target."""
        found = re.findall(r"\bln -sf? +(/[^\s;&|]+) +(/[^\s;&|]+)", self.run_text)
        return {name: target for target, name in found}

    def created(self, context: Path) -> set[str]:
        """Every path this stage's COPY/ADD lines, links and ``mkdir``s put in the image (files
        copied from the build context ``context`` are listed one by one)."""
        paths = set(self.links())
        paths.update(re.findall(r"\bmkdir -p +(/\S+)", self.run_text))
        for source, sources, dest in self.copies():
            into_folder = dest.endswith("/") or len(sources) > 1
            for item in sources:
                target = posixpath.join(dest, posixpath.basename(item.rstrip("/"))) \
                    if into_folder else dest.rstrip("/")
                paths.add(target)
                local = context / item
                if source is None and local.is_dir():
                    paths.update(posixpath.join(target, p.relative_to(local).as_posix())
                                 for p in local.rglob("*"))
        return paths


def logical_lines(text: str) -> list[str]:
    """Instructions one per line: comments dropped (inside continuations too), ``\\`` joined."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        lines.append((current + raw).strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def parse(text: str) -> list[Stage]:
    stages: list[Stage] = []
    workdir = "/"
    for line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
            workdir = "/"
            continue
        if keyword == "WORKDIR":
            workdir = posixpath.join(workdir, args)
        if not stages:  # ARG before the first FROM
            continue
        stages[-1].instructions.append(Instruction(keyword, args, workdir))
    return stages


def stage_named(stages: list[Stage], name: str) -> Stage | None:
    return next((s for s in stages if s.name == name), None)
