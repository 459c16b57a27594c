"""The MLflow model registry: versions, their tags and description, the champion and challenger
aliases. The only module that writes to the registry."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from contextlib import redirect_stderr
from dataclasses import dataclass

from pipeline.errors import PipelineError, first_line
from pipeline.redaction import redact
from pipeline.tracking import keys
from pipeline.tracking.runs import quote
from pipeline.tracking.tracker import Tracker

CHAMPION, CHALLENGER = keys.CHAMPION, keys.CHALLENGER


class RegistryError(PipelineError, LookupError):
    """A registered model, version or alias does not exist."""


class AliasMovedError(PipelineError, RuntimeError):
    """An alias moved between being read and being moved (another promotion): not overwritten."""

    exit_code = 5  # a concurrent change stopped the job; nothing was overwritten


@dataclass(frozen=True)
class ModelRef:
    """One registered model version."""

    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


def register(tracker: Tracker, run_id: str, name: str, tags: Mapping[str, str]) -> ModelRef:
    """The run's raw-input model as a new version of ``name`` (created if new), tagged."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        # redirect: MLflow prints "Successfully registered model" on stderr
        with tracker.active(), redirect_stderr(io.StringIO()):
            version = mlflow.register_model(f"runs:/{run_id}/{keys.RAW_MODEL_ARTIFACT}", name,
                                            tags={key: redact(value) for key, value in
                                                  tags.items()},
                                            await_registration_for=60)
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot register the model of run {run_id} as '{name}': "
                            f"{first_line(exc)}") from None
    return ModelRef(name, str(version.version))


def by_alias(tracker: Tracker, name: str, alias: str) -> ModelRef | None:
    """The version holding ``alias``; None when the model or the alias does not exist. Any
    other failure (an unreachable server) raises: "no champion" must never be a guess."""
    from mlflow.exceptions import MlflowException

    try:
        version = tracker.client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        missing = exc.error_code == "RESOURCE_DOES_NOT_EXIST" or (
            exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc))
        if missing:
            return None
        raise RegistryError(f"cannot read alias '{alias}' of '{name}': {first_line(exc)}") \
            from None
    return ModelRef(name, str(version.version))


def set_alias(tracker: Tracker, ref: ModelRef, alias: str) -> None:
    tracker.client.set_registered_model_alias(ref.name, alias, ref.version)


def move_alias(tracker: Tracker, ref: ModelRef, alias: str, expected: ModelRef | None) -> None:
    """Point ``alias`` at ``ref`` only if it still points at ``expected`` (None: at no version),
    re-read right before the move; otherwise raise ``AliasMovedError``. MLflow has no atomic
    compare-and-set: what is left is the gap between one read and one write, not a judgement."""
    current = by_alias(tracker, ref.name, alias)
    if current != expected:
        raise AliasMovedError(
            f"'{alias}' of '{ref.name}' now points at {current or 'no version'}, not at "
            f"{expected or 'no version'} as when {ref} was judged: another promotion moved it "
            f"meanwhile, and it is not overwritten. Judge {ref} again against the new {alias} "
            "(pipeline promote, or the next retrain, does)")
    set_alias(tracker, ref, alias)


def parse_ref(text: str) -> ModelRef | None:
    """``str(ModelRef)`` (``name vN``) back to the reference; None for anything else."""
    name, _, version = text.rpartition(" v")
    return ModelRef(name, version) if name and version.isdigit() else None


def delete_alias(tracker: Tracker, name: str, alias: str) -> None:
    tracker.client.delete_registered_model_alias(name, alias)


def tag(tracker: Tracker, ref: ModelRef, tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        tracker.client.set_model_version_tag(ref.name, ref.version, key, redact(value))


def version_tags(tracker: Tracker, ref: ModelRef) -> dict[str, str]:
    return dict(tracker.client.get_model_version(ref.name, ref.version).tags)


def versions(tracker: Tracker, name: str) -> list[tuple[ModelRef, dict[str, str]]]:
    """(version, its tags) of every version of ``name``, oldest first; none for a new name."""
    found = tracker.client.search_model_versions(f"name = {quote(name)}")
    return sorted(((ModelRef(name, str(v.version)), dict(v.tags)) for v in found),
                  key=lambda item: int(item[0].version))


def versions_tagged(tracker: Tracker, name: str, key: str, value: str
                    ) -> list[tuple[ModelRef, dict[str, str]]]:
    """(version, its tags) of every version of ``name`` tagged ``key=value``, oldest first."""
    return [(ref, tags) for ref, tags in versions(tracker, name) if tags.get(key) == value]


def describe(tracker: Tracker, ref: ModelRef, text: str) -> None:
    tracker.client.update_model_version(ref.name, ref.version, description=text)


def resolve(tracker: Tracker, model_uri: str) -> ModelRef | None:
    """``models:/name/3`` or ``models:/name@alias`` -> the version; other URIs -> None."""
    from mlflow.exceptions import MlflowException

    found = re.fullmatch(r"models:/([^/@]+)(?:/(\d+)|@([\w-]+))", model_uri)
    if not found:
        return None
    name, version, alias = found.groups()
    try:
        if alias:
            return ModelRef(name, str(tracker.client.get_model_version_by_alias(
                name, alias).version))
        tracker.client.get_model_version(name, version)
    except MlflowException:
        raise RegistryError(f"{model_uri}: no such registered model version") from None
    return ModelRef(name, version)
