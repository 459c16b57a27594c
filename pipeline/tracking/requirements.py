"""The pinned pip requirements logged with every model: what a model of this environment needs
to load elsewhere. Apart from ``keras`` so that logging a model's requirements never imports
TensorFlow (a promotion or a retrain that trains nothing does not pay for it)."""

from __future__ import annotations


def pip_requirements(*extra: str) -> list[str]:
    """What a Keras model of this environment needs (and the ``extra`` distributions), pinned
    to the installed versions. Given explicitly, MLflow skips inferring them (a subprocess that
    loads the model: ~15 s). TensorFlow as ``tensorflow``, installed here maybe as
    ``tensorflow-cpu`` (Linux only)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(*names: str) -> str:
        for name in names:
            try:
                return version(name)
            except PackageNotFoundError:
                continue
        raise PackageNotFoundError(names[0])

    return [f"mlflow=={installed('mlflow')}", f"cloudpickle=={installed('cloudpickle')}",
            f"numpy=={installed('numpy')}",
            f"tensorflow=={installed('tensorflow', 'tensorflow-cpu')}",
            *(f"{name}=={installed(name)}" for name in extra)]
