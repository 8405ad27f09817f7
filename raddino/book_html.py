"""Build the Jupyter Book 1 HTML from the executed chapters, fully offline.

The JavaScript the pages need (require.js + the ipywidgets embed manager, MathJax) is fetched once
from the npm registry into the git-ignored `book/_build/vendor/` and copied to
`_static/vendor/` of the built HTML, where `_config.yml` points the pages; no page loads a script,
stylesheet or font from a CDN, and `offline_violations` checks that on the built HTML. (The
vendored files must not sit in `book/_static/`: Jupyter Book 1 adds every .js file found there
as a <script> to every page.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR_DIR = Path("book") / "_build" / "vendor"  # fetch cache, git-ignored with _build/
HTML_VENDOR_DIR = Path("_static") / "vendor"  # inside the built HTML folder
VENDOR_MANIFEST = "vendor.json"

# npm package spec -> (folder inside the package, folder under vendor/, names to leave out).
# require.js and the widget embed manager match ipywidgets 8 (html-manager 1.x); MathJax 3 is
# what Sphinx 7's math extension expects. Leaving out MathJax's SVG/"full" bundles halves its size.
VENDOR_PACKAGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "requirejs@2.3.8": ("", "requirejs", ("bin",)),
    "@jupyter-widgets/html-manager@1.0.15": ("dist", "html-manager", (".map",)),
    "mathjax@3.2.2": ("es5", "mathjax", ("-full", "svg", "node-main")),
}


# Written beside the vendored packages and loaded between require.js and the widget manager: the
# manager's webpack bundle finds its fonts relative to its AMD module URL, which require.js would
# otherwise resolve against the page (→ 404s), so point that module path at the vendored copy.
REQUIRE_CONFIG_NAME = "require-config.js"
REQUIRE_CONFIG_JS = """// raddino: widget-manager AMD modules (and their fonts) load from here.
(function () {
  var here = document.currentScript.src;
  var dist = here.slice(0, here.lastIndexOf("/") + 1) + "html-manager/";
  var names = ["base", "base7", "controls", "controls7", "html-manager"];
  var paths = { "@jupyter-widgets/html-manager/dist": dist.slice(0, -1) };
  names.forEach(function (name) { paths["@jupyter-widgets/" + name] = dist + name; });
  require.config({ paths: paths });
})();
"""


def vendor_js(root: str | os.PathLike = ".", *, log=print) -> Path:
    """Fetch the pages' JavaScript into `book/_build/vendor/` (once; a manifest records it)."""
    vendor = Path(root) / VENDOR_DIR
    manifest_path = vendor / VENDOR_MANIFEST
    wanted = sorted(VENDOR_PACKAGES)
    if manifest_path.is_file():
        try:
            up_to_date = json.loads(manifest_path.read_text()).get("packages") == wanted
            if up_to_date and (vendor / REQUIRE_CONFIG_NAME).read_text() == REQUIRE_CONFIG_JS:
                return vendor
        except (json.JSONDecodeError, FileNotFoundError):
            pass
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError(
            f"npm not found: it is needed once to fetch {wanted} into {vendor} "
            "(the book must not load scripts from a CDN); install npm or copy those files there"
        )
    vendor.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=vendor.parent, prefix=".vendor-") as tmp:
        tmp = Path(tmp)
        staging = tmp / "vendor"
        staging.mkdir()
        for spec, (inner, target, skip) in VENDOR_PACKAGES.items():
            log(f"vendor: npm pack {spec}")
            result = subprocess.run(
                [npm, "pack", "--silent", spec],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if result.returncode != 0:
                raise FileNotFoundError(f"npm pack {spec} failed: {result.stderr.strip()[-500:]}")
            tarball = tmp / result.stdout.strip().splitlines()[-1]
            _extract_folder(tarball, inner, staging / target, skip)
        (staging / REQUIRE_CONFIG_NAME).write_text(REQUIRE_CONFIG_JS)
        (staging / VENDOR_MANIFEST).write_text(json.dumps({"packages": wanted}, indent=2) + "\n")
        if vendor.exists():
            shutil.rmtree(vendor)
        os.replace(staging, vendor)
    return vendor


def _extract_folder(tarball: Path, inner: str, target: Path, skip: tuple[str, ...]) -> None:
    """Extract `package/<inner>/...` of an npm tarball into `target`, leaving out `skip` names."""
    prefix = f"package/{inner}/" if inner else "package/"
    with tarfile.open(tarball) as archive:
        members = []
        for member in archive.getmembers():
            if not member.isfile() or not member.name.startswith(prefix):
                continue
            relative = member.name[len(prefix) :]
            if any(part in relative for part in skip):
                continue
            member.name = relative
            members.append(member)
        if not members:
            raise ValueError(f"{tarball.name}: no files under {prefix}")
        archive.extractall(target, members=members, filter="data")


def check_toc_outputs(root: str | os.PathLike = ".") -> list[str]:
    """Pages listed in `book/_toc.yml` that do not exist yet (e.g. chapters never executed)."""
    import yaml

    book = Path(root) / "book"
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    names = [toc["root"]]
    stack = list(toc.get("chapters", [])) + [
        c for part in toc.get("parts", []) for c in part.get("chapters", [])
    ]
    while stack:
        entry = stack.pop(0)
        if "file" in entry:
            names.append(entry["file"])
        stack.extend(entry.get("sections", []))
    missing = []
    for name in names:
        if not any((book / f"{name}{suffix}").is_file() for suffix in ("", ".md", ".ipynb")):
            missing.append(name)
    return missing


def build_html(root: str | os.PathLike = ".", *, log=print) -> Path:
    """Run `jupyter-book build` on `book/` with the root `_config.yml`; returns the HTML folder."""
    import importlib.util

    if importlib.util.find_spec("jupyter_book") is None:
        raise FileNotFoundError(
            "jupyter-book is not installed; run "
            "`pip install -c constraints.txt -r requirements/book.txt`"
        )
    root = Path(root).resolve()
    vendor = vendor_js(root, log=log)
    missing = check_toc_outputs(root)
    if missing:
        raise FileNotFoundError(
            f"book/_toc.yml lists pages that do not exist: {missing}; execute them first "
            "(`raddino book --no-build` runs every chapter)"
        )
    command = [
        sys.executable,
        "-c",
        "from jupyter_book.cli.main import main; main()",
        "build",
        str(root / "book"),
        "--config",
        str(root / "_config.yml"),
        "--toc",
        str(root / "book" / "_toc.yml"),
        "--path-output",
        str(root / "book"),
        "--builder",
        "html",
    ]
    log("build: " + " ".join(command[3:]))
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"jupyter-book build failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-3000:]}"
        )
    warnings = [ln for ln in result.stderr.splitlines() if "WARNING" in ln or "ERROR" in ln]
    for line in warnings:
        log(f"build: {line}")
    html = root / "book" / "_build" / "html"
    shutil.copytree(vendor, html / HTML_VENDOR_DIR, dirs_exist_ok=True)
    violations = offline_violations(html)
    if violations:
        raise RuntimeError(
            f"built pages load remote resources (first of {len(violations)}): {violations[:5]}"
        )
    log(f"build: {html / 'index.html'}")
    return html


_REMOTE = r"(?:https?:)?//"
_TAG_PATTERNS = (
    re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?(" + _REMOTE + r"[^\"'\s>]+)", re.I),
    re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(" + _REMOTE + r"[^\"'\s>]+)", re.I),
    re.compile(
        r"<(?:img|iframe|source|video|audio)\b[^>]*\bsrc\s*=\s*[\"']?(" + _REMOTE + r"[^\"'\s>]+)",
        re.I,
    ),
)
_CSS_PATTERNS = (
    re.compile(r"@import\s+(?:url\()?\s*[\"']?(" + _REMOTE + r"[^\"')\s;]+)", re.I),
    re.compile(r"url\(\s*[\"']?(" + _REMOTE + r"[^\"')\s]+)", re.I),
)


def offline_violations(html_dir: str | os.PathLike) -> list[str]:
    """`file: url` for every remote script/stylesheet/font/image a built page or its CSS loads.

    Scans `<script src>`, `<link href>`, media `src` in HTML, and `@import`/`url()` in HTML and
    CSS files. Links a reader clicks (`<a href>`) are fine and not reported.
    """
    html_dir = Path(html_dir)
    if not html_dir.is_dir():
        raise FileNotFoundError(f"no built HTML at {html_dir}")
    found = []
    for path in sorted(html_dir.rglob("*")):
        if path.suffix not in (".html", ".css") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        patterns = _CSS_PATTERNS + (_TAG_PATTERNS if path.suffix == ".html" else ())
        for pattern in patterns:
            for match in pattern.finditer(text):
                found.append(f"{path.relative_to(html_dir)}: {match.group(1)}")
    return found
