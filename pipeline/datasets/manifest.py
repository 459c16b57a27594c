"""``manifest.json``: what a dataset version holds, so later stages need no side channel."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pipeline import storage
from pipeline.errors import PipelineError
from pipeline.redaction import redact

MANIFEST_NAME = "manifest.json"
LATEST_NAME = "LATEST"  # in a folder of versions: the name of the newest one
VOCAB_NAME = "vocab.txt"  # in a text version: one token per line, line i holds id i
FORMAT_VERSION = 2  # 2: ``data`` may point at the folder holding the splits


@dataclass(frozen=True)
class SplitInfo:
    rows: int
    row_groups: int
    per_label: dict[str, int]


@dataclass(frozen=True)
class Manifest:
    """What a dataset version holds; written once by the ingest job, read by every stage."""

    kind: Literal["images", "text"]
    source: str
    created_at: str
    config: dict[str, Any]
    label_map: dict[str, int]
    discovered: int
    splits: dict[str, SplitInfo]
    quarantine: dict[str, int]
    schema: list[dict[str, Any]]
    fingerprint: str
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    data: str = ""  # the folder holding the splits, relative; "" = beside the manifest

    def __post_init__(self) -> None:
        """``source`` is stored redacted (a password or a signed URL's token never lands in
        the version, its MLflow artifact or lineage), however the manifest was made."""
        object.__setattr__(self, "source", redact(self.source))

    @property
    def quarantined(self) -> int:
        return sum(self.quarantine.values())

    @property
    def num_classes(self) -> int:
        return len(self.label_map)

    @property
    def labels(self) -> list[str]:
        """Label names in class-index order."""
        return sorted(self.label_map, key=self.label_map.__getitem__)

    def accounted(self) -> bool:
        """Every discovered input is in exactly one split or in quarantine."""
        return sum(s.rows for s in self.splits.values()) + self.quarantined == self.discovered

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "manifest.json") -> Manifest:
        """Parse and check a manifest; ``where`` names it in errors."""
        try:
            data = json.loads(text)
            found = int(data.get("format_version", 1))
            if found > FORMAT_VERSION:
                raise ManifestError(f"{where} has format_version {found}; this release reads "
                                    f"up to {FORMAT_VERSION}: upgrade the pipeline to read it")
            data["splits"] = {name: SplitInfo(**info) for name, info in data["splits"].items()}
            return cls(**data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"{where} is not a valid dataset manifest "
                                f"({type(exc).__name__}: {exc})") from None


class ManifestError(PipelineError, ValueError):
    """A manifest is damaged, or was written by a newer release."""


class NotADatasetError(PipelineError, FileNotFoundError):
    """The path holds no committed dataset version."""


def is_version_name(name: str) -> bool:
    """``vNNNN``: a version's folder in a folder of versions (the one naming rule)."""
    return re.fullmatch(r"v\d+", name) is not None


def committed_versions(collection_uri: str) -> list[str]:
    """The ``vNNNN`` names in a folder of versions that hold a manifest, oldest first (what a
    writer staged or claimed but never committed is not among them)."""
    names = [n for n in storage.list_names(collection_uri) if is_version_name(n)]
    return sorted((n for n in names if storage.exists(storage.join(collection_uri, n,
                                                                    MANIFEST_NAME))),
                  key=lambda n: int(n[1:]))


def resolve_version(dataset_url: str) -> str:
    """A dataset version's URI: ``dataset_url`` itself, or the newest committed one in a folder
    of versions (found by listing; the ``LATEST`` pointer only for folders without numbers)."""
    if storage.exists(storage.join(dataset_url, MANIFEST_NAME)):
        return dataset_url
    committed = committed_versions(dataset_url)
    if committed:
        return storage.join(dataset_url, committed[-1])
    try:
        latest = storage.read_text(storage.join(dataset_url, LATEST_NAME)).strip()
    except FileNotFoundError:
        raise NotADatasetError(
            f"{dataset_url} is not a dataset version (no {MANIFEST_NAME}); "
            "create one with 'pipeline ingest images'") from None
    return storage.join(dataset_url, latest)


def open_version(dataset_url: str) -> tuple[str, Manifest]:
    """(URI of the version's data, manifest) of a committed dataset version; the data is
    beside the manifest, or in the folder its ``data`` names (an overwrite on object stores)."""
    url = resolve_version(dataset_url)
    try:
        where = storage.join(url, MANIFEST_NAME)
        manifest = Manifest.from_json(storage.read_text(where), where)
    except FileNotFoundError:
        raise NotADatasetError(f"{url} is not a dataset version (no {MANIFEST_NAME})") from None
    return (storage.join(url, manifest.data) if manifest.data else url), manifest


def read_manifest(dataset_url: str) -> Manifest:
    """Load the manifest of a committed dataset version, or say clearly that there is none."""
    return open_version(dataset_url)[1]
