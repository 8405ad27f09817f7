"""Kernel-free patch explorer for the rendered book: click a patch, see its cosine similarity.

`static_explorer_html` embeds a few images and their patch features (L2-normalised, quantised to
int8, base64) in one HTML snippet with plain JavaScript: a click on any image computes, in the
browser, the cosine similarity of that patch to every patch of every image and draws it as a
heatmap over each image. No kernel, no CDN, no library; display it with `IPython.display.HTML`.
(Hand-written: no maintained library renders a patch-similarity explorer without a kernel.)
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from collections.abc import Sequence

import numpy as np

MAX_EMBEDDED_BYTES = 8_000_000  # keep book pages loadable; reduce `dims` for more images


def quantize_patch_features(patch_features_bhwc: np.ndarray) -> np.ndarray:
    """L2-normalise every patch vector and scale it to int8 (cosine needs only directions)."""
    features = np.asarray(patch_features_bhwc, dtype=np.float32)
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    unit = features / np.maximum(norms, 1e-12)
    peak = np.max(np.abs(unit), axis=-1, keepdims=True)  # per patch: use the full int8 range
    return np.round(unit / np.maximum(peak, 1e-12) * 127.0).astype(np.int8)


def reduce_dims_pca(patch_features_bhwc: np.ndarray, dims: int) -> np.ndarray:
    """Project patch features onto their top `dims` principal directions (pages stay small)."""
    b, h, w, c = patch_features_bhwc.shape
    flat_nc = patch_features_bhwc.reshape(-1, c).astype(np.float64)
    if dims >= c:
        return patch_features_bhwc
    centered = flat_nc - flat_nc.mean(axis=0)
    _, _, vt_dc = np.linalg.svd(centered, full_matrices=False)
    return (centered @ vt_dc[:dims].T).reshape(b, h, w, dims).astype(np.float32)


def _png_data_uri(image_hw: np.ndarray) -> str:
    from PIL import Image

    image = np.asarray(image_hw)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _colormap_lut(name: str = "inferno") -> list[list[int]]:
    import matplotlib

    rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))
    return np.round(rgba[:, :3] * 255).astype(int).tolist()


def static_explorer_html(
    images: Sequence[np.ndarray],
    patch_features_bhwc: np.ndarray,
    names: Sequence[str],
    *,
    display_px: int = 224,
    dims: int | None = None,
    colormap: str = "inferno",
    title: str = "Click a patch of any image",
) -> str:
    """HTML + JS snippet: images (H, W) in [0, 1] with their (B, h, w, C) patch features.

    Clicking image i at patch (r, c) colours every image by cosine similarity to that patch and
    marks each image's best match. `dims` reduces features by PCA before embedding.
    """
    features = np.asarray(patch_features_bhwc)
    if features.ndim != 4:
        raise ValueError(
            f"patch_features_bhwc must have shape (B, h, w, C), got {tuple(features.shape)}"
        )
    if not (len(images) == len(names) == features.shape[0]):
        raise ValueError(
            f"got {len(images)} images, {len(names)} names and {features.shape[0]} feature grids; "
            "they must match"
        )
    if not np.all(np.isfinite(features)):
        raise ValueError("patch_features_bhwc contains NaN or infinite values")
    for i, image in enumerate(images):
        if np.asarray(image).ndim != 2:
            raise ValueError(f"images[{i}] must be (H, W) grey, got shape {np.shape(image)}")
    if dims is not None:
        if dims < 1:
            raise ValueError(f"dims must be >= 1, got {dims}")
        features = reduce_dims_pca(features, dims)
    quantized_bhwc = quantize_patch_features(features)
    if quantized_bhwc.nbytes > MAX_EMBEDDED_BYTES:
        raise ValueError(
            f"{quantized_bhwc.nbytes} bytes of features is too much for one page "
            f"(limit {MAX_EMBEDDED_BYTES}); pass dims= or fewer images"
        )
    b, h, w, c = quantized_bhwc.shape
    payload = {
        "grid": [h, w],
        "dims": c,
        "names": [str(n) for n in names],
        "images": [_png_data_uri(image) for image in images],
        "features": base64.b64encode(quantized_bhwc.tobytes()).decode(),
        "lut": _colormap_lut(colormap),
        "displayPx": int(display_px),
    }
    payload_json = json.dumps(payload, separators=(",", ":"))
    uid = "rdx" + hashlib.sha1(payload_json.encode()).hexdigest()[:10]
    # JSON inside a <script> must not close the tag early.
    safe_json = payload_json.replace("</", "<\\/")
    return (
        _TEMPLATE.replace("__UID__", uid)
        .replace("__TITLE__", html.escape(title))
        .replace("__PAYLOAD__", safe_json)
    )


_TEMPLATE = """
<div class="raddino-explorer" id="__UID__" data-raddino-explorer="1" data-query=""
     style="font-size:0.9rem;margin:0.5rem 0 1rem">
  <div style="margin-bottom:0.3rem"><b>__TITLE__</b> (kernel-free: similarity is computed
  in your browser from int8 patch features embedded in this page)</div>
  <div class="raddino-explorer-row" style="display:flex;flex-wrap:wrap;gap:0.75rem"></div>
  <div class="raddino-explorer-status" style="margin-top:0.4rem;font-family:monospace">
    no patch selected</div>
</div>
<script>
(function () {
  "use strict";
  var root = document.getElementById("__UID__");
  if (!root || root.dataset.ready) { return; }
  root.dataset.ready = "1";
  var data = __PAYLOAD__;
  var rows = data.grid[0], cols = data.grid[1], dims = data.dims;
  var raw = atob(data.features);
  var feats = new Int8Array(raw.length);
  for (var k = 0; k < raw.length; k++) { feats[k] = (raw.charCodeAt(k) << 24) >> 24; }
  var perImage = rows * cols, nImages = data.names.length;
  var norms = new Float32Array(nImages * perImage);
  for (var p = 0; p < norms.length; p++) {
    var s = 0;
    for (var d = 0; d < dims; d++) { var v = feats[p * dims + d]; s += v * v; }
    norms[p] = Math.sqrt(s) || 1;
  }
  var row = root.querySelector(".raddino-explorer-row");
  var status = root.querySelector(".raddino-explorer-status");
  var size = data.displayPx, canvases = [], pictures = [];
  data.names.forEach(function (name, i) {
    var fig = document.createElement("figure");
    fig.style.margin = "0"; fig.style.textAlign = "center";
    var canvas = document.createElement("canvas");
    canvas.width = size; canvas.height = size;
    canvas.style.cursor = "crosshair"; canvas.style.border = "1px solid #888";
    canvas.dataset.index = String(i);
    var caption = document.createElement("figcaption");
    caption.textContent = name;
    fig.appendChild(canvas); fig.appendChild(caption); row.appendChild(fig);
    var img = new Image();
    img.onload = function () { draw(i, null, -1); };
    img.src = data.images[i];
    canvases.push(canvas); pictures.push(img);
    canvas.addEventListener("click", function (event) {
      var box = canvas.getBoundingClientRect();
      var c = Math.min(cols - 1, Math.floor((event.clientX - box.left) / box.width * cols));
      var r = Math.min(rows - 1, Math.floor((event.clientY - box.top) / box.height * rows));
      select(i, r, c);
    });
  });
  function draw(i, sims, mark) {
    var ctx = canvases[i].getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, size, size);
    if (pictures[i].complete) { ctx.drawImage(pictures[i], 0, 0, size, size); }
    if (!sims) { return; }
    var cw = size / cols, ch = size / rows;
    ctx.globalAlpha = 0.55;
    for (var q = 0; q < perImage; q++) {
      var t = Math.max(0, Math.min(1, (sims[q] + 1) / 2));
      var rgb = data.lut[Math.round(t * 255)];
      ctx.fillStyle = "rgb(" + rgb[0] + "," + rgb[1] + "," + rgb[2] + ")";
      ctx.fillRect((q % cols) * cw, Math.floor(q / cols) * ch, cw, ch);
    }
    ctx.globalAlpha = 1.0;
    if (mark >= 0) {
      ctx.strokeStyle = "#00e5ff"; ctx.lineWidth = 2;
      ctx.strokeRect((mark % cols) * cw + 1, Math.floor(mark / cols) * ch + 1, cw - 2, ch - 2);
    }
  }
  function select(i, r, c) {
    var query = (i * perImage + r * cols + c);
    var lines = ["query: " + data.names[i] + " patch (row " + r + ", col " + c + ")"];
    for (var j = 0; j < nImages; j++) {
      var sims = new Float32Array(perImage), best = -1, bestSim = -2;
      for (var q = 0; q < perImage; q++) {
        var p = j * perImage + q, dot = 0;
        for (var d = 0; d < dims; d++) { dot += feats[query * dims + d] * feats[p * dims + d]; }
        sims[q] = dot / (norms[query] * norms[p]);
        if ((j !== i || q !== r * cols + c) && sims[q] > bestSim) { bestSim = sims[q]; best = q; }
      }
      draw(j, sims, j === i ? r * cols + c : best);
      if (best >= 0) {
        lines.push(data.names[j] + ": best match (row " + Math.floor(best / cols) + ", col " +
                   (best % cols) + "), cosine " + bestSim.toFixed(3));
      }
    }
    root.dataset.query = i + "," + r + "," + c;
    status.textContent = lines.join(" | ");
  }
})();
</script>
"""
