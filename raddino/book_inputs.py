"""What decides a chapter's output, as one digest: its source, the parameters it receives, the
raddino version and the source of the raddino modules it imports (followed through their imports).
A chapter whose digest matches its last good run is skipped by the runner."""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def raddino_modules_used(code_cells: Iterable[str]) -> list[Path]:
    """Source files of the raddino modules the code imports, followed through their imports.

    Static (ast) scan: imports anywhere in a file count, including lazy ones inside functions.
    Package data files (YAML, JSON, safetensors) beside a used module count too.
    """
    import raddino

    package_dir = Path(raddino.__file__).resolve().parent
    pending: list[str] = []
    for code in code_cells:
        pending.extend(_imported_names(_parse_lenient(code), package=None))
    seen_files: set[Path] = set()
    seen_names: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen_names or not (name == "raddino" or name.startswith("raddino.")):
            continue
        seen_names.add(name)
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b, a.b.c
            path = _module_file(package_dir, parts[1:depth])
            if path is None or path in seen_files:
                continue
            seen_files.add(path)
            package = (
                ".".join(parts[:depth])
                if path.name == "__init__.py"
                else ".".join(parts[: depth - 1])
            )
            pending.extend(_imported_names(_parse_lenient(path.read_text()), package=package))
    data_files = {
        p
        for f in seen_files
        for p in f.parent.iterdir()
        if p.is_file() and p.suffix in (".yaml", ".yml", ".json", ".safetensors")
    }
    return sorted(seen_files | data_files)


def _module_file(package_dir: Path, parts: list[str]) -> Path | None:
    base = package_dir.joinpath(*parts)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _parse_lenient(code: str) -> ast.Module:
    """Parse code, dropping IPython magic/shell lines (`%`, `!`) that are not Python."""
    lines = [ln for ln in code.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])


def _imported_names(tree: ast.Module, package: str | None) -> list[str]:
    """Module names imported by `tree` (absolute; relative ones resolved against `package`)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level and package:
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)  # maybe submodules
    return names


def chapter_inputs_digest(
    source_text: str, parameters: Mapping[str, Any], library_files: Iterable[Path]
) -> str:
    """SHA-256 of what decides a chapter's output: source, parameters, raddino version, modules."""
    import raddino

    digest = hashlib.sha256()
    digest.update(source_text.encode())
    digest.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    digest.update(raddino.__version__.encode())
    package_dir = Path(raddino.__file__).resolve().parent
    for path in sorted(library_files):
        digest.update(path.relative_to(package_dir).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
