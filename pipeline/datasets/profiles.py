"""What one record looks like, as numbers and categories: its profile.

Plain Python, no Spark. Ingest profiles every accepted record while it holds the pixels or the
cleaned text (no second pass over raw files); ``statistics`` turns profiles into a version's
histograms. Image measures are taken on the resized pixels, before encoding (what a model
sees; with the default lossless PNG, the stored rows give the same profile; with JPEG, nearly),
so PNG and JPEG versions compare alike. The features are listed, with their bin edges, in
``statistics.FEATURES``.
"""

from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np

Profile = dict[str, Any]  # feature name -> a number or a category

NEAR_CONSTANT_STD = 2.0  # luma standard deviation (0-255) below which an image is near-constant
CHANNELS = {3: ("r", "g", "b"), 1: ("l",)}


def luma(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB or (H, W) gray uint8 -> float (H, W) luma (ITU-R 601, as cv2 and Pillow)."""
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return pixels.reshape(pixels.shape[:2]).astype(np.float64)


def image_profile(pixels: np.ndarray, width: int, height: int, fmt: str, mode: str) -> Profile:
    """Measures of the stored pixels, and the original file's size, format and mode."""
    gray = luma(pixels)
    contrast = float(gray.std())
    values = pixels.reshape(-1, pixels.shape[2] if pixels.ndim == 3 else 1).astype(np.float64)
    profile: Profile = {
        "width": width, "height": height, "format": fmt, "mode": mode,
        "brightness": float(gray.mean()), "contrast": contrast,
        "sharpness": float(cv2.Laplacian(gray, cv2.CV_64F).var()),
        "near_constant": "yes" if contrast < NEAR_CONSTANT_STD else "no",
    }
    for index, channel in enumerate(CHANNELS[values.shape[1]]):
        profile[f"channel_{channel}_mean"] = float(values[:, index].mean())
        profile[f"channel_{channel}_square"] = float(np.square(values[:, index]).mean())
    return profile


def text_profile(cleaned: str, n_tokens: int, encoding: str) -> Profile:
    """Measures of a cleaned text: characters, tokens, non-ASCII share, how it was decoded."""
    non_ascii = len(cleaned) - len(cleaned.encode("ascii", "ignore"))  # counted in C
    return {"chars": len(cleaned), "tokens": n_tokens, "encoding": encoding,
            "non_ascii": non_ascii / len(cleaned) if cleaned else 0.0}


def oov_share(token_ids: np.ndarray, length: int, oov_id: int) -> float:
    """Share of a stored text's tokens (its first ``length`` ids) outside the vocabulary."""
    return float(np.count_nonzero(token_ids[:length] == oov_id) / length) if length else 0.0


def with_oov(profile_json: str, share: float) -> str:
    """A text's stored profile with its out-of-vocabulary share, known once the vocabulary is."""
    return dumps({**json.loads(profile_json), "oov": share})


def dumps(profile: Profile) -> str:
    """A profile as stored in a record's ``profile`` column while the job runs."""
    return json.dumps(profile, sort_keys=True)
