"""Transfer learning, worker side: a model starts from another model's weights, layer by
matching layer (the n-th layer of a class, with the same weight shapes), and named layers stay
frozen for the first epochs (``train.init_from``, ``train.freeze``). A retrain's warm start is
the case where every layer matches."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.errors import PipelineError
from pipeline.train.model import OUTPUT_LAYER

BACKBONE = "backbone"  # train.freeze: every layer with weights but the output layer


class TransferError(PipelineError, ValueError):
    """Nothing of the source model fits, or ``train.freeze`` names a layer the model lacks."""


def _shapes(layer) -> list[tuple[int, ...]]:
    return [tuple(w.shape) for w in layer.weights]


def _by_place(model) -> dict[tuple[str, int], object]:
    """Layers with weights keyed by (class, rank among the layers of that class): the first
    Conv2D, the second Conv2D... Keras's automatic names (``conv2d_7``) depend on what the
    process built before, so they cannot pair layers of two models."""
    places: dict[tuple[str, int], object] = {}
    for layer in (layer for layer in model.layers if layer.weights):
        kind = type(layer).__name__
        places[(kind, sum(1 for k, _ in places if k == kind))] = layer
    return places


def copy_matching_weights(model, source) -> tuple[list[str], list[str]]:
    """Copy into each layer of ``model`` the weights of the ``source`` layer at its place (the
    n-th layer of its class) when their weight shapes agree; (transferred, fresh) names of the
    layers that hold weights. A head for other classes or an embedding for another vocabulary
    stays fresh."""
    theirs = _by_place(source)
    transferred, fresh = [], []
    for place, layer in _by_place(model).items():
        match = theirs.get(place)
        if match is not None and _shapes(match) == _shapes(layer):
            layer.set_weights(match.get_weights())
            transferred.append(layer.name)
        else:
            fresh.append(layer.name)
    return transferred, fresh


def layers_to_freeze(model, names: Sequence[str]) -> list:
    """The layers ``train.freeze`` names (``backbone``: all with weights but the output)."""
    if list(names) == [BACKBONE]:
        return [layer for layer in model.layers if layer.weights and layer.name != OUTPUT_LAYER]
    known = {layer.name: layer for layer in model.layers}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise TransferError(f"config key 'train.freeze': {', '.join(unknown)} is not a layer "
                            f"of {model.name}; its layers are {', '.join(known)} (or use "
                            f"[{BACKBONE}])")
    return [known[name] for name in names]
