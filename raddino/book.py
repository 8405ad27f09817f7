"""Run the book's chapters (Jupytext notebooks) with papermill under a profile; then build the HTML.

A profile (`profiles/<name>.yml`) sets the parameters injected into each notebook's `parameters`
cell. A chapter is re-executed only when its inputs changed: its source text, the parameters it
receives, the raddino version and the source of the raddino modules it imports (followed through
their own imports). Executed notebooks go to `book/<chapter>.ipynb`; a failing chapter stops the
run with its name, cell and error, keeps the other chapters' outputs, and leaves its partial
notebook in `runs/book/failed/`. The HTML build itself lives in `raddino.book_html`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raddino.book_inputs import chapter_inputs_digest, raddino_modules_used
from raddino.book_profiles import (
    NOTEBOOK_DIR,
    PROFILE_DIR,
    Profile,
    chapter_parameters,
    declared_parameters,
    find_root,
    load_profile,
    with_overrides,
)

__all__ = [  # the runner's API, including what it re-exports from its helper modules
    "CHAPTER_DEPENDENCIES",
    "Chapter",
    "ChapterFailed",
    "ChapterPlan",
    "Profile",
    "chapter_inputs_digest",
    "chapter_parameters",
    "copy_book_sources",
    "declared_parameters",
    "discover_chapters",
    "find_root",
    "load_profile",
    "plan_chapter",
    "raddino_modules_used",
    "read_chapter",
    "run_book",
    "select_chapters",
]

OUTPUT_DIR = "book"
FAILED_DIR = Path("runs") / "book" / "failed"
WORK_DIR = Path("runs") / "book" / "executing"
KERNEL_NAME = "raddino"
RECORD_KEY = "raddino_book"  # notebook metadata key holding the runner's record

# Chapters that read another chapter's results (name -> prerequisites). Most chapters share work
# through the stage cache instead and need no entry; otherwise chapters run in file-name order.
CHAPTER_DEPENDENCIES: dict[str, tuple[str, ...]] = {}


class ChapterFailed(RuntimeError):
    """A chapter raised while executing; the message names the chapter, cell and error."""


# ------------------------------------------------------------------------------ chapters


@dataclass(frozen=True)
class Chapter:
    """One notebook of the book: its Jupytext source and where its executed output goes."""

    name: str
    source: Path
    output: Path


def discover_chapters(root: str | os.PathLike | None = None) -> list[Chapter]:
    """Chapters in `notebooks/` (Jupytext percent `.py`), in dependency then file-name order."""
    from graphlib import CycleError, TopologicalSorter

    root = find_root(root) if root is None else Path(root)
    sources = sorted((root / NOTEBOOK_DIR).glob("[0-9]*.py"))
    if not sources:
        raise FileNotFoundError(f"no chapters (notebooks/NN_name.py) under {root / NOTEBOOK_DIR}")
    by_name = {p.stem: p for p in sources}
    sorter: TopologicalSorter = TopologicalSorter()
    for name in by_name:
        prerequisites = CHAPTER_DEPENDENCIES.get(name, ())
        missing = [p for p in prerequisites if p not in by_name]
        if missing:
            raise ValueError(f"chapter {name} depends on missing chapter(s) {missing}")
        sorter.add(name, *prerequisites)
    try:
        sorter.prepare()
    except CycleError as err:
        raise ValueError(f"chapter dependencies form a cycle: {err.args[1]}") from err
    ordered: list[str] = []
    while sorter.is_active():  # among the chapters ready at each step, file-name order
        ready = sorted(sorter.get_ready())
        ordered.extend(ready)
        sorter.done(*ready)
    return [Chapter(n, by_name[n], root / OUTPUT_DIR / f"{n}.ipynb") for n in ordered]


def select_chapters(chapters: list[Chapter], only: Iterable[str] | None) -> list[Chapter]:
    """The chapters named in `only` (a name or its number prefix, e.g. `01`) plus prerequisites."""
    if not only:
        return chapters
    names = {c.name for c in chapters}
    wanted: set[str] = set()
    for key in only:
        matches = [n for n in names if n == key or n.split("_", 1)[0] == key]
        if len(matches) != 1:
            raise ValueError(
                f"--only {key!r}: expected one chapter, found {sorted(matches)}; "
                f"chapters: {sorted(names)}"
            )
        stack = [matches[0]]
        while stack:
            name = stack.pop()
            if name not in wanted:
                wanted.add(name)
                stack.extend(CHAPTER_DEPENDENCIES.get(name, ()))
    return [c for c in chapters if c.name in wanted]


def read_chapter(chapter: Chapter):
    """The chapter's notebook (nbformat node) read from its Jupytext percent source."""
    import jupytext

    try:
        return jupytext.read(chapter.source, fmt="py:percent")
    except Exception as err:  # jupytext raises many types; name the file
        raise ValueError(f"{chapter.source}: cannot read as a Jupytext notebook: {err}") from err


def output_record(output: Path) -> dict[str, Any] | None:
    """The runner's record stored in an executed notebook's metadata, or None."""
    if not output.is_file():
        return None
    try:
        record = json.loads(output.read_text()).get("metadata", {}).get(RECORD_KEY)
    except (json.JSONDecodeError, OSError):
        return None
    return record if isinstance(record, dict) else None


# ------------------------------------------------------------------------------ execution


BOOK_SOURCES = ("_config.yml", NOTEBOOK_DIR, PROFILE_DIR, OUTPUT_DIR)


def copy_book_sources(root: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Copy what a book build reads (config, notebooks, profiles, book pages) without outputs.

    For building in a scratch folder (tests, timing) without touching the checkout's `book/`.
    """
    import shutil

    root, destination = Path(root), Path(destination)
    outputs = shutil.ignore_patterns("_build", "*.ipynb", ".*", "__pycache__")
    for name in BOOK_SOURCES:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=outputs, dirs_exist_ok=True)
        elif source.is_file():
            destination.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
        else:
            raise FileNotFoundError(f"book source {source} is missing")
    return destination


@dataclass
class ChapterPlan:
    """What the runner will do for a chapter: the parameters, the inputs digest, run or skip."""

    chapter: Chapter
    parameters: dict[str, Any]
    digest: str
    library_files: list[Path]
    up_to_date: bool


def plan_chapter(chapter: Chapter, profile: Profile) -> ChapterPlan:
    """Resolve parameters and the inputs digest; up to date when the output's record matches."""
    notebook = read_chapter(chapter)
    declared = declared_parameters(notebook, str(chapter.source))
    parameters = chapter_parameters(profile, chapter.name, declared)
    code = [c.source for c in notebook.cells if c.cell_type == "code"]
    library_files = raddino_modules_used(code)
    digest = chapter_inputs_digest(chapter.source.read_text(), parameters, library_files)
    record = output_record(chapter.output)
    up_to_date = bool(record and record.get("status") == "ok" and record.get("inputs") == digest)
    return ChapterPlan(chapter, parameters, digest, library_files, up_to_date)


def ensure_kernel_spec(name: str = KERNEL_NAME) -> str:
    """Register (inside this Python's prefix) a Jupyter kernel that runs this very interpreter."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
        if spec.argv and Path(spec.argv[0]).resolve() == Path(sys.executable).resolve():
            return name
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(kernel_name=name, display_name=f"Python ({name})", prefix=sys.prefix)
    return name


def execute_chapter(
    plan: ChapterPlan, profile: Profile, root: Path, *, progress: bool = True
) -> float:
    """Execute one chapter with papermill into its output notebook; returns seconds taken."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from raddino.utils import versions, write_text_atomic

    chapter = plan.chapter
    notebook = read_chapter(chapter)
    notebook.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": f"Python ({KERNEL_NAME})",
        "language": "python",
    }
    kernel = ensure_kernel_spec()
    started = time.perf_counter()
    failed_path = root / FAILED_DIR / f"{chapter.name}.ipynb"
    work_dir = root / WORK_DIR
    work_dir.mkdir(parents=True, exist_ok=True)
    # papermill writes as it goes; the final output is replaced only after a clean run.
    work_output = work_dir / f"{chapter.name}.{os.getpid()}.ipynb"
    try:
        executed = papermill.execute_notebook(
            notebook,
            str(work_output),
            parameters=plan.parameters,
            kernel_name=kernel,
            cwd=str(root),
            progress_bar=progress,
            execution_timeout=profile.cell_timeout_s,
            report_mode=False,
        )
    except PapermillExecutionError as err:
        failed_path.parent.mkdir(parents=True, exist_ok=True)
        if work_output.is_file():
            os.replace(work_output, failed_path)
        where = _failure_location(chapter, failed_path)
        raise ChapterFailed(
            f"chapter {chapter.name} failed {where}: {err.ename}: {err.evalue}. "
            f"Partial output: {failed_path}; other chapters' outputs are kept."
        ) from None
    finally:
        if work_output.exists():
            work_output.unlink()
    seconds = time.perf_counter() - started
    executed.metadata[RECORD_KEY] = {
        "status": "ok",
        "inputs": plan.digest,
        "profile": profile.name,
        "parameters": plan.parameters,
        "library_files": [p.name for p in plan.library_files],
        "seconds": round(seconds, 1),
        "versions": versions(),
    }
    write_text_atomic(chapter.output, nbformat.writes(executed))
    if failed_path.exists():
        failed_path.unlink()
    return seconds


def _failure_location(chapter: Chapter, failed_output: Path) -> str:
    """'in cell N (notebooks/x.py line L)' for the first cell with an error output."""
    import nbformat

    if not failed_output.is_file():
        return "(no output notebook was written)"
    executed = nbformat.read(str(failed_output), as_version=4)
    source_text = chapter.source.read_text()
    source_cells = [c.source for c in read_chapter(chapter).cells]
    for cell in executed.cells:
        if cell.cell_type != "code":
            continue
        if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            if cell.source in source_cells:
                number = source_cells.index(cell.source) + 1
                offset = source_text.find(cell.source) if cell.source else -1
                line = source_text.count("\n", 0, offset) + 1 if offset >= 0 else "?"
                return f"in cell {number} ({chapter.source} line {line})"
            return "in the injected parameters cell (check the profile's values)"
    return "(no cell recorded the error; see the partial output)"


def set_thread_limits(threads: int | None) -> None:
    """Cap BLAS/OpenMP threads for the kernels this process starts (they inherit the env)."""
    if threads is None:
        return
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RADDINO_THREADS"):
        os.environ[var] = str(threads)


def run_book(
    profile_name: str,
    root: str | os.PathLike = ".",
    only: Iterable[str] | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    log=print,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Execute the (selected) chapters whose inputs changed; returns a summary per chapter.

    `overrides` (`raddino book --set`) set parameters over the profile's, for every chapter that
    declares them; a name no chapter declares is an error.
    """
    root = Path(root).resolve()
    profile = load_profile(profile_name, root)
    chapters = discover_chapters(root)
    if overrides:
        declared = set().union(*(declared_parameters(read_chapter(c), c.name) for c in chapters))
        unknown = sorted(set(overrides) - declared)
        if unknown:
            raise ValueError(f"--set {unknown}: no chapter declares such a parameter")
        profile = with_overrides(profile, overrides)
    unknown = sorted(set(profile.chapters) - {c.name for c in chapters})
    if unknown:
        raise ValueError(f"{profile.path}: 'chapters' names unknown chapter(s) {unknown}")
    selected = select_chapters(chapters, only)
    plans = [plan_chapter(c, profile) for c in selected]  # validate everything before running
    set_thread_limits(profile.threads)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiet debugger warning
    summary: dict[str, Any] = {}
    for k, plan in enumerate(plans, start=1):
        name = plan.chapter.name
        if plan.up_to_date and not force:
            log(f"[{k}/{len(plans)}] {name}: up to date, skipped")
            summary[name] = {"status": "skipped"}
            continue
        log(f"[{k}/{len(plans)}] {name}: executing with profile {profile.name}")
        seconds = execute_chapter(plan, profile, root, progress=progress)
        log(f"[{k}/{len(plans)}] {name}: done in {seconds:.1f} s -> {plan.chapter.output}")
        summary[name] = {"status": "executed", "seconds": round(seconds, 1)}
    return summary
