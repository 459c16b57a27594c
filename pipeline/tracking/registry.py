"""The MLflow model registry: versions, their tags and description, the champion and challenger
aliases. The only module that writes to the registry."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from contextlib import redirect_stdout
from dataclasses import dataclass

from pipeline.errors import PipelineError, first_line

CHAMPION, CHALLENGER = "champion", "challenger"


class RegistryError(PipelineError, LookupError):
    """A registered model, version or alias does not exist."""


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


def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def register(tracking_uri: str, run_id: str, name: str, tags: Mapping[str, str]) -> ModelRef:
    """The run's model as a new version of ``name`` (created if new), tagged."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        version = mlflow.register_model(f"runs:/{run_id}/model", name, tags=dict(tags),
                                        await_registration_for=60)
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot register the model of run {run_id} as '{name}': "
                            f"{first_line(exc)}") from None
    return ModelRef(name, str(version.version))


def by_alias(tracking_uri: str, name: str, alias: str) -> ModelRef | None:
    """The version holding ``alias``; None when the model or the alias does not exist. Any
    other failure (an unreachable server) raises: "no champion" must never be a guess."""
    from mlflow.exceptions import MlflowException

    try:
        version = _client(tracking_uri).get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        missing = exc.error_code == "RESOURCE_DOES_NOT_EXIST" or (
            exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc))
        if missing:
            return None
        raise RegistryError(f"cannot read alias '{alias}' of '{name}': {first_line(exc)}") \
            from None
    return ModelRef(name, str(version.version))


def set_alias(tracking_uri: str, ref: ModelRef, alias: str) -> None:
    _client(tracking_uri).set_registered_model_alias(ref.name, alias, ref.version)


def delete_alias(tracking_uri: str, name: str, alias: str) -> None:
    _client(tracking_uri).delete_registered_model_alias(name, alias)


def tag(tracking_uri: str, ref: ModelRef, tags: Mapping[str, str]) -> None:
    client = _client(tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(ref.name, ref.version, key, str(value))


def version_tags(tracking_uri: str, ref: ModelRef) -> dict[str, str]:
    return dict(_client(tracking_uri).get_model_version(ref.name, ref.version).tags)


def versions_tagged(tracking_uri: str, name: str, key: str, value: str
                    ) -> list[tuple[ModelRef, dict[str, str]]]:
    """(version, its tags) of every version of ``name`` tagged ``key=value``, oldest first."""
    found = _client(tracking_uri).search_model_versions(f"name = '{name}'")
    return sorted(((ModelRef(name, str(v.version)), dict(v.tags)) for v in found
                   if dict(v.tags).get(key) == value), key=lambda item: int(item[0].version))


def describe(tracking_uri: str, ref: ModelRef, text: str) -> None:
    _client(tracking_uri).update_model_version(ref.name, ref.version, description=text)


def resolve(tracking_uri: str, model_uri: str) -> ModelRef | None:
    """``models:/name/3`` or ``models:/name@alias`` -> the version; other URIs -> None."""
    from mlflow.exceptions import MlflowException

    found = re.fullmatch(r"models:/([^/@]+)(?:/(\d+)|@([\w-]+))", model_uri)
    if not found:
        return None
    name, version, alias = found.groups()
    try:
        if alias:
            return ModelRef(name, str(_client(tracking_uri).get_model_version_by_alias(
                name, alias).version))
        _client(tracking_uri).get_model_version(name, version)
    except MlflowException:
        raise RegistryError(f"{model_uri}: no such registered model version") from None
    return ModelRef(name, version)


def load_predictor(tracking_uri: str, model_uri: str):
    """The logged model's ``predict`` (inputs -> class probabilities), from any model URI."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        return quiet_predict(mlflow.pyfunc.load_model(model_uri))
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot load model {model_uri}: {first_line(exc)}") from None


def quiet_predict(model):
    """A pyfunc model's ``predict`` without the progress bar Keras prints on every call."""

    def predict(inputs):
        with redirect_stdout(io.StringIO()):
            return model.predict(inputs)

    return predict


def model_run(tracking_uri: str, model_uri: str) -> str:
    """The id of the training run that logged the model."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        run_id = mlflow.models.get_model_info(model_uri).run_id
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot load model {model_uri}: {first_line(exc)}") from None
    if not run_id:
        raise RegistryError(f"{model_uri} was not logged by a training run: its preprocessing "
                            "(the dataset manifest) is unknown")
    return run_id


def fetch_model(tracking_uri: str, model_uri: str, dest: str) -> tuple[str, str]:
    """Download the model to ``dest``; returns (local model folder, the run that trained it)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = model_run(tracking_uri, model_uri)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dest)
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"cannot load model {model_uri}: {first_line(exc)}") from None
    return local, run_id
