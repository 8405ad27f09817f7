"""Live patch explorer for JupyterLab (ipywidgets): pick a patch, see its cosine similarity.

Choose a query and a target image, an encoder and a layer, pick a patch of the query (row/column
sliders, or a click on the image when the optional `ipyevents` package is installed): the target
is coloured by the cosine similarity of each of its patches to the query patch and its top-k
matches are marked and listed. The logic lives in `raddino.viz.patch_similarity` (tested without
a browser); this module only wires it to widgets. The rendered book uses
`raddino.viz.explorer_static` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from raddino.viz.patch_similarity import (  # noqa: F401  (re-exported for notebooks and tests)
    BEST_COLOUR,
    HEATMAP_ALPHA,
    MATCH_COLOUR,
    QUERY_COLOUR,
    PatchFeatureStore,
    PatchMatch,
    check_index,
    click_to_patch,
    render_overlay_png,
    top_k_patches,
)


def kernel_has_interactive_frontend() -> bool:
    """True in a kernel driven by an interactive frontend (JupyterLab), False under papermill.

    A heuristic: interactive frontends accept `input()` requests (`allow_stdin`); papermill's
    executor does not, and a plain Python process has no kernel at all.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    return bool(getattr(kernel, "_allow_stdin", False))


class PatchExplorer:
    """The ipywidgets explorer: dropdowns (query, target, encoder, layer), patch sliders, views.

    Display it as the last expression of a cell (or `display(explorer)`). `select_patch` and the
    controls' `.value` drive it programmatically; `similarity_hw` and `matches` hold what it shows.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        encoders: Mapping[str, Any],
        *,
        names: Sequence[str] | None = None,
        layers: int = 4,
        size: int | None = None,
        top_k: int = 5,
        display_px: int = 256,
        value_range: tuple[float, float] = (-1.0, 1.0),
        device: str = "cpu",
        progress: bool = True,
    ) -> None:
        import ipywidgets as widgets

        self.store = PatchFeatureStore(
            images, encoders, layers=layers, size=size, device=device, progress=progress
        )
        count = len(self.store.images)
        names = [f"image {i}" for i in range(count)] if names is None else [str(n) for n in names]
        if len(names) != count:
            raise ValueError(f"names: {len(names)} names for {count} images")
        self.names, self.display_px, self.value_range = names, display_px, value_range
        first = self.store.encoder_names[0]
        grid_h, grid_w = self.store.grid_hw(first)
        self.similarity_hw: np.ndarray | None = None
        self.matches: list[PatchMatch] = []
        self._busy = False

        images_list = [(name, i) for i, name in enumerate(names)]
        self.query = widgets.Dropdown(options=images_list, value=0, description="query")
        self.target = widgets.Dropdown(
            options=images_list, value=min(1, count - 1), description="target"
        )
        self.encoder = widgets.Dropdown(options=self.store.encoder_names, description="encoder")
        self.layer = widgets.Dropdown(
            options=self._layer_options(first),
            value=len(self.store.layer_labels(first)) - 1,
            description="layer",
        )
        self.row = widgets.IntSlider(value=grid_h // 2, min=0, max=grid_h - 1, description="row")
        self.col = widgets.IntSlider(value=grid_w // 2, min=0, max=grid_w - 1, description="col")
        self.top_k = widgets.IntSlider(value=top_k, min=1, max=20, description="top k")
        self.stretch = widgets.Checkbox(value=False, description="stretch colours to this map")
        self.query_view = widgets.Image(format="png")
        self.target_view = widgets.Image(format="png")
        self.table = widgets.HTML()
        self.status = widgets.HTML()
        self.click_events = self._attach_click()
        hint = "click the query image or use" if self.click_events else "pick the query patch with"
        self.controls = [self.query, self.target, self.encoder, self.layer]
        self.controls += [self.row, self.col, self.top_k, self.stretch]
        for control in self.controls:
            control.observe(self._on_change, names="value")
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.query, self.target]),
                widgets.HBox([self.encoder, self.layer]),
                widgets.HBox([self.row, self.col, widgets.Label(f"({hint} the sliders)")]),
                widgets.HBox([self.top_k, self.stretch]),
                widgets.HBox(
                    [
                        widgets.VBox([widgets.Label("query patch (cyan)"), self.query_view]),
                        widgets.VBox([widgets.Label("target: cosine, top k"), self.target_view]),
                        self.table,
                    ]
                ),
                self.status,
            ]
        )
        self.refresh()

    def _layer_options(self, encoder: str) -> list[tuple[str, int]]:
        return [(label, k) for k, label in enumerate(self.store.layer_labels(encoder))]

    def _attach_click(self) -> Any:
        """Clicks on the query view select a patch when `ipyevents` is installed (optional)."""
        try:
            from ipyevents import Event
        except ImportError:
            return None
        events = Event(source=self.query_view, watched_events=["click"])
        events.on_dom_event(self.on_click)
        return events

    def on_click(self, event: Mapping[str, Any]) -> None:
        """An ipyevents click event on the query view -> select the patch under it."""
        grid_hw = self.store.grid_hw(self.encoder.value)
        if "dataX" in event:  # image pixel coordinates of the PNG shown
            cell = max(1, self.display_px // max(grid_hw))
            extent = (grid_hw[1] * cell, grid_hw[0] * cell)
            x, y = event["dataX"], event["dataY"]
        else:
            extent = (event["boundingRectWidth"], event["boundingRectHeight"])
            x, y = event["relativeX"], event["relativeY"]
        self.select_patch(*click_to_patch(x, y, extent[0], extent[1], grid_hw))

    def select_patch(self, row: int, col: int) -> None:
        """Make patch (row, col) of the query image the query (one redraw)."""
        grid_h, grid_w = self.store.grid_hw(self.encoder.value)
        row = check_index(row, grid_h, "row", "patch rows")
        col = check_index(col, grid_w, "col", "patch columns")
        self._busy = True
        try:
            self.row.value, self.col.value = row, col
        finally:
            self._busy = False
        self.refresh()

    def _on_change(self, change: dict) -> None:
        if self._busy:
            return
        if change["owner"] is self.encoder:
            self._adapt_to_encoder(change["old"], change["new"])
        self.refresh()

    def _adapt_to_encoder(self, old: str, new: str) -> None:
        """New layer names and grid size; the layer keeps its depth from the top, the query
        patch its place in the image."""
        (old_h, old_w), (new_h, new_w) = self.store.grid_hw(old), self.store.grid_hw(new)
        row = min(new_h - 1, int((self.row.value + 0.5) * new_h / old_h))
        col = min(new_w - 1, int((self.col.value + 0.5) * new_w / old_w))
        from_end = len(self.layer.options) - 1 - self.layer.value  # 0: the deepest layer
        self._busy = True
        try:
            self.layer.options = self._layer_options(new)
            self.layer.value = max(0, len(self.layer.options) - 1 - from_end)
            self.row.max, self.col.max = new_h - 1, new_w - 1
            self.row.value, self.col.value = row, col
        finally:
            self._busy = False

    def refresh(self) -> None:
        """Recompute the similarity map and top-k matches and redraw both views."""
        import html

        encoder, layer = self.encoder.value, self.layer.value
        query, target, row, col = (
            self.query.value,
            self.target.value,
            self.row.value,
            self.col.value,
        )
        grid_hw = self.store.grid_hw(encoder)
        self.similarity_hw = self.store.similarity(
            encoder=encoder,
            layer=layer,
            query_image=query,
            query_row=row,
            query_col=col,
            target_image=target,
        )
        exclude = (row, col) if query == target else None  # its own patch is trivially 1.0
        self.matches = top_k_patches(self.similarity_hw, self.top_k.value, exclude=exclude)
        marks = [(m.row, m.col, MATCH_COLOUR, str(k)) for k, m in enumerate(self.matches, 1)]
        if marks:
            marks[0] = (*marks[0][:2], BEST_COLOUR, "1")
        common = {"display_px": self.display_px}
        self.query_view.value = render_overlay_png(
            self.store.images[query], grid_hw, frame=self.store.model_frame(encoder, query),
            marks=[(row, col, QUERY_COLOUR, "")], **common,
        )  # fmt: skip
        self.target_view.value = render_overlay_png(
            self.store.images[target], grid_hw, frame=self.store.model_frame(encoder, target),
            similarity_hw=self.similarity_hw, marks=marks,
            value_range=None if self.stretch.value else self.value_range, **common,
        )  # fmt: skip
        rows = "".join(
            f"<tr><td>{k}</td><td>({m.row}, {m.col})</td><td>{m.cosine:.3f}</td></tr>"
            for k, m in enumerate(self.matches, 1)
        )
        self.table.value = (
            "<table><tr><th>rank</th><th>(row, col)</th><th>cosine</th></tr>" + rows + "</table>"
        )
        layer_name = self.store.layer_labels(encoder)[layer]
        self.status.value = html.escape(
            f"{self.names[query]} patch ({row}, {col}) -> {self.names[target]}; {encoder}, "
            f"{layer_name}; cosine {self.similarity_hw.min():.3f} .. "
            f"{self.similarity_hw.max():.3f}" + (" (own patch left out)" if exclude else "")
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = "PatchExplorer (a live widget: open the notebook in JupyterLab)"
        return bundle
