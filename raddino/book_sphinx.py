"""Sphinx extension for the book: remove what Jupyter Book 1 adds but an offline book must not run.

Jupyter Book 1 loads `sphinx_thebe` unconditionally; its inline configuration script names a CDN
(thebe on unpkg) and is emitted twice per page, which redeclares a `const` and raises a
SyntaxError in the browser. We use no thebe (no live kernels in the rendered book), so its scripts
are dropped, and any other inline script emitted twice is kept once. Enabled in `_config.yml`.
"""

from __future__ import annotations

from typing import Any


def drop_thebe_and_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    """Edit this page's script list in place: no thebe, each (file, inline body) only once."""
    scripts = context.get("script_files")
    if not scripts:
        return
    kept, seen = [], set()
    for script in scripts:
        filename = str(getattr(script, "filename", script) or "")
        attributes = getattr(script, "attributes", {}) or {}
        body = attributes.get("body", "")
        if "thebe" in filename.lower() or "THEBE_JS_URL" in body:
            continue
        key = (filename, body)
        if key in seen:
            continue
        seen.add(key)
        kept.append(script)
    scripts[:] = kept


def setup(app) -> dict[str, Any]:
    # Late priority: run after myst-nb and the themes have added their per-page scripts.
    app.connect("html-page-context", drop_thebe_and_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
