"""An evaluation's explanations as people see them: pixel maps over the inputs (PNG grids), token
attributions as a coloured HTML page and a per-class summary of the most influential words."""

from __future__ import annotations

import html
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.tracking import keys
from pipeline.tracking.reports import png_bytes, pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure


TOP_TOKENS = 10  # words per class in the summary figure


def heatmaps_figure(images: np.ndarray, maps: np.ndarray, titles: Sequence[str],
                    method: str) -> Figure:
    """Each chosen row's input with its map over it (jet, half transparent), 6 per line."""
    plt = pyplot()
    columns = min(6, len(images))
    lines = -(-len(images) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(2.4 * columns, 2.6 * lines),
                                squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, heat, title in zip(axes.flat, images, maps, titles, strict=False):
        pixels = image.astype(np.uint8)
        axis.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray")
        axis.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        axis.set_title(title, fontsize=7)
    figure.suptitle(method.replace("_", " "))
    figure.tight_layout()
    return figure


def top_tokens(tokens: Sequence[Sequence[str]], attributions: Sequence[np.ndarray],
               predicted: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
    """Per predicted class, the words whose removal costs that class most, summed over rows."""
    totals: dict[str, dict[str, float]] = {}
    for words, values, label in zip(tokens, attributions, predicted, strict=True):
        for word, value in zip(words, values, strict=True):
            totals.setdefault(label, {}).setdefault(word, 0.0)
            totals[label][word] += float(value)
    return {label: sorted(words.items(), key=lambda kv: -kv[1])[:TOP_TOKENS]
            for label, words in totals.items()}


def top_tokens_figure(top: Mapping[str, Sequence[tuple[str, float]]]) -> Figure:
    plt = pyplot()
    figure, axes = plt.subplots(1, len(top), figsize=(4 * len(top), 4), squeeze=False)
    for axis, (label, pairs) in zip(axes.flat, top.items(), strict=True):
        words = [w for w, _ in pairs][::-1]
        axis.barh(words, [v for _, v in pairs][::-1], color="tab:red")
        axis.set_title(f"predicted {label}: most influential words", fontsize=9)
        axis.set_xlabel("probability lost without the word")
    figure.tight_layout()
    return figure


def token_page(titles: Sequence[str], tokens: Sequence[Sequence[str]],
               attributions: Sequence[np.ndarray]) -> str:
    """HTML: each row's words, red where the word supports the predicted class, blue where it
    works against it, stronger with the attribution."""
    peak = max([float(np.abs(a).max()) for a in attributions if len(a)] + [1e-9])
    rows = []
    for title, words, values in zip(titles, tokens, attributions, strict=True):
        spans = " ".join(
            f'<span style="background: rgba({"220,50,32" if v > 0 else "30,90,200"},'
            f'{abs(float(v)) / peak:.2f})" title="{float(v):+.3f}">{html.escape(w)}</span>'
            for w, v in zip(words, values, strict=True))
        rows.append(f"<h3>{html.escape(title)}</h3><p>{spans}</p>")
    return ("<!doctype html><meta charset='utf-8'><title>Token attributions</title>"
            "<p>Each word coloured by how much the predicted class's probability drops when it "
            "is removed (red) or rises (blue).</p>" + "".join(rows))


def explanation_files(explained) -> dict[str, bytes]:
    """An explanation as files by name: image maps as PNG grids (one per method), or the token
    page and the per-class summary of the most influential words."""
    if explained.kind == "images":
        return {f"{method}.png": png_bytes(heatmaps_figure(explained.images, maps,
                                                           explained.titles, method))
                for method, maps in explained.maps.items()}
    page = token_page(explained.titles, explained.tokens, explained.attributions)
    top = top_tokens(explained.tokens, explained.attributions, explained.predicted)
    return {"token_attributions.html": page.encode("utf-8"),
            "top_tokens.png": png_bytes(top_tokens_figure(top))}


def log_explanations(client, run_id: str, explained) -> None:
    """An evaluation's explanations under ``explanations/`` of its run."""
    with tempfile.TemporaryDirectory(prefix="pipeline-explanations-") as folder:
        for name, content in explanation_files(explained).items():
            Path(folder, name).write_bytes(content)
        client.log_artifacts(run_id, folder, keys.EXPLANATIONS)
