"""Book profiles: named parameter sets (`profiles/<name>.yml`) checked against each chapter's
`parameters` cell before anything runs, so a typo or a wrong type fails at once, naming the key."""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOTEBOOK_DIR = "notebooks"
PROFILE_DIR = "profiles"
PROFILE_KEYS = {"description", "parameters", "chapters", "threads", "cell_timeout_s"}


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The book's repository root: `start` (default: cwd) or the nearest parent holding both
    `notebooks/` and `profiles/` — so chapters opened in JupyterLab find it too."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / NOTEBOOK_DIR).is_dir() and (folder / PROFILE_DIR).is_dir():
            return folder
    raise FileNotFoundError(
        f"no book root (a folder with notebooks/ and profiles/) at or above {start}"
    )


@dataclass(frozen=True)
class Profile:
    """A named parameter set: global parameters, per-chapter overrides, threads, cell timeout."""

    name: str
    path: Path
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    chapters: dict[str, dict[str, Any]] = field(default_factory=dict)
    threads: int | None = None
    cell_timeout_s: int | None = None


def load_profile(name_or_path: str | os.PathLike, root: str | os.PathLike | None = None) -> Profile:
    """Read and validate a profile: a name in `profiles/` (e.g. `cpu`) or a path to a YAML file."""
    import yaml

    root = find_root(root) if root is None else Path(root)
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yml", ".yaml")) or os.sep in text):
        path = Path(root) / PROFILE_DIR / f"{text}.yml"
    if not path.is_file():
        available = sorted(p.stem for p in (Path(root) / PROFILE_DIR).glob("*.yml"))
        raise FileNotFoundError(f"profile {text!r}: {path} not found; available: {available}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(data) - PROFILE_KEYS)
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) {unknown}; expected some of {sorted(PROFILE_KEYS)}"
        )
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ValueError(f"{path}: 'parameters' must be a mapping name -> value")
    chapters = data.get("chapters") or {}
    if not isinstance(chapters, dict) or not all(
        isinstance(v, dict) for v in chapters.values() if v is not None
    ):
        raise ValueError(f"{path}: 'chapters' must map chapter name -> mapping of parameters")
    for key in ("threads", "cell_timeout_s"):
        value = data.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{path}: '{key}' must be a positive integer, got {value!r}")
    return Profile(
        name=path.stem,
        path=path,
        description=str(data.get("description", "")),
        parameters=dict(parameters),
        chapters={str(k): dict(v or {}) for k, v in chapters.items()},
        threads=data.get("threads"),
        cell_timeout_s=data.get("cell_timeout_s"),
    )


def declared_parameters(notebook, where: str) -> dict[str, Any]:
    """Names and default values assigned in the cell tagged `parameters` (exactly one required)."""
    cells = [c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(
            f"{where}: expected exactly one cell tagged 'parameters' "
            f'(`# %% tags=["parameters"]`), found {len(cells)}'
        )
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError as err:
        raise ValueError(f"{where}: parameters cell is not valid Python: {err}") from err
    defaults: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        defaults[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        defaults[target.id] = None  # not a literal: accept any injected type
    return defaults


def parse_assignments(assignments: Sequence[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` arguments as a mapping; VALUE is read as YAML (`5`, `true`, `[a, b]`,
    a bare string), so a value has the type the profile file would give it."""
    import yaml

    values: dict[str, Any] = {}
    for text in assignments:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"--set {text!r}: expected PARAMETER=VALUE, e.g. probe_n=200")
        try:
            values[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ValueError(f"--set {key}: value {raw!r} is not valid YAML ({err})") from None
    return values


def with_overrides(profile: Profile, values: Mapping[str, Any]) -> Profile:
    """`profile` with `values` set for every chapter: they become globals, and per-chapter values
    of the same names are dropped so that nothing overrides them."""
    from dataclasses import replace

    chapters = {
        name: {k: v for k, v in (own or {}).items() if k not in values}
        for name, own in profile.chapters.items()
    }
    return replace(profile, parameters={**profile.parameters, **values}, chapters=chapters)


def chapter_parameters(
    profile: Profile, chapter: str, declared: Mapping[str, Any]
) -> dict[str, Any]:
    """Parameters injected into `chapter`: the profile's globals it declares, then its overrides.

    A per-chapter override the notebook does not declare, or a value whose type differs from the
    notebook's default, is an error naming the profile, chapter and key.
    """
    values = {k: v for k, v in profile.parameters.items() if k in declared}
    if "profile_name" in declared:
        values["profile_name"] = profile.name
    overrides = profile.chapters.get(chapter, {})
    undeclared = sorted(set(overrides) - set(declared))
    if undeclared:
        raise ValueError(
            f"{profile.path}: chapters.{chapter} sets {undeclared}, which the notebook's "
            f"parameters cell does not declare (declared: {sorted(declared)})"
        )
    values.update(overrides)
    for key, value in values.items():
        default = declared[key]
        if default is None or value is None:
            continue
        if not _same_kind(value, default):
            raise ValueError(
                f"{profile.path}: parameter {key!r} for chapter {chapter} is "
                f"{type(value).__name__} {value!r}, but the notebook's default is "
                f"{type(default).__name__} {default!r}"
            )
    return values


def _same_kind(value: Any, default: Any) -> bool:
    """Whether an injected value fits a default: bools only bools, ints ints, floats numbers."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return type(value) is type(default)
