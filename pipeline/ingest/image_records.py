"""One raw image file -> one record: accepted (split, encoded image, hash) or rejected (reason)."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import PIL

from pipeline.config import ImagesConfig
from pipeline.datasets.profiles import dumps
from pipeline.datasets.reasons import Reason
from pipeline.ingest.images import prepare_image
from pipeline.ingest.rejection import Rejected
from pipeline.ingest.split import assign_split

# what decides the record ``clean_image_file`` gives for the same bytes and settings: a retrain
# reads every input again, instead of reusing the previous version's rows, when it changed (bump
# the number when the code changes it; a new decoder or encoder changes it by itself)
ROW_RULES = f"1 (Pillow {PIL.__version__}, OpenCV {cv2.__version__})"


class ImageRecord(NamedTuple):
    """A cleaned input. Accepted records have ``split``; rejected ones ``reason`` and ``detail``."""

    path: str
    label_name: str | None
    split: str | None
    image: bytes | None
    content_hash: str | None
    reason: str | None
    detail: str | None
    profile: str | None  # accepted: the stored pixels' profile as JSON (datasets.profiles)

    @classmethod
    def rejected(cls, path: str, label: str | None, reason: Reason, detail: str | None
                 ) -> ImageRecord:
        """A quarantined input; ``reason`` stored as a plain str (Spark's JVM unpickler, which
        reads rows made in Python, knows no enum)."""
        return cls(path, label, None, None, None, str(reason), detail, None)


def clean_image_file(path: str, content: bytes, label: str, images: ImagesConfig,
                     ratios: dict[str, float]) -> ImageRecord:
    """Never raises: any failure becomes a rejected record naming the reason."""
    try:
        prepared = prepare_image(bytes(content), images)
        split = assign_split(prepared.content_hash, ratios)
        return ImageRecord(path, label, split, prepared.encoded, prepared.content_hash, None, None,
                           dumps(prepared.profile))
    except Rejected as rejected:
        return ImageRecord.rejected(path, label, rejected.reason, rejected.detail)
    except Exception as exc:  # a decoder bug must quarantine one file, not kill the job
        return ImageRecord.rejected(path, label, Reason.UNEXPECTED_ERROR,
                                    f"{type(exc).__name__}: {exc}")
