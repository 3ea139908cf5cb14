"""Re-initialise the top encoder layers before fine-tuning (Zhang et al. 2021,
"Revisiting Few-sample BERT Fine-tuning").

The top layers of a pretrained encoder are specialised to the pretraining
task; starting them afresh often helps fine-tuning, most on small data.
``reinit.layers`` is searched in {0, 1, 2, 3}; 0 is the neutral choice. A
value above the model's number of layers re-initialises them all; a study that
fixes more layers than the model has is refused at validation.

Re-initialised like BERT's own initialisation: linear and embedding weights
from a normal distribution with the config's ``initializer_range`` (0.02 when
it has none), biases zero, LayerNorm weight 1 and bias 0. The draws come from
a generator seeded with the trial's seed, so a trial is reproducible whatever
else consumed the global random state. Only the layers change; the pooler, the
head and the embeddings stay as built.
"""

from __future__ import annotations

import torch

from autobert import hookimpl
from autobert.errors import PluginError
from autobert.services import ENCODER_RULE, encoder_not_found, find_encoder, study_model_layers

MAX_LAYERS = 3


@hookimpl
def autobert_search_space(space):
    space.suggest_int("reinit.layers", 0, MAX_LAYERS, valid="[0, inf)")


@hookimpl
def autobert_ablation():
    # Zhang et al. re-initialise the top few layers; 2 is the middle of the searched range.
    return {"off": {"reinit.layers": 0}, "on": {"reinit.layers": 2}}


@hookimpl
def autobert_validate_study(study, space):
    asked = space["reinit.layers"].highest  # the most layers a trial may re-initialise
    found = study_model_layers(study) if asked else None
    if found is None:
        return None
    model_type, n_layers = found
    if n_layers is None:
        return [encoder_not_found("reinit", study.model, model_type)]
    # The default range may exceed a small model (a trial re-initialises what there is); a study that asks for more may not.
    if space.changed("reinit.layers") and asked > n_layers:
        return [
            f"techniques.reinit.layers: asks to re-initialise up to {asked} layers, but {study.model!r} "
            f"has {n_layers}; use at most {n_layers}"
        ]
    return None


def _normal(param: torch.Tensor, std: float, generator: torch.Generator) -> None:
    # Drawn on the CPU, so the values do not depend on the device the model is on.
    param.copy_(torch.empty(param.shape, dtype=torch.float32).normal_(0.0, std, generator=generator))


@torch.no_grad()
def reinitialise(layer: torch.nn.Module, std: float, generator: torch.Generator) -> None:
    """Give ``layer``'s linear, embedding and LayerNorm modules fresh BERT-style values."""
    for module in layer.modules():
        if isinstance(module, torch.nn.Linear):
            _normal(module.weight, std, generator)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, torch.nn.Embedding):
            _normal(module.weight, std, generator)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, torch.nn.LayerNorm):
            if module.weight is not None:
                module.weight.fill_(1.0)
            if module.bias is not None:
                module.bias.zero_()


@hookimpl
def autobert_modify_model(model, run):
    n = run.params["reinit.layers"]
    if not n:
        return
    parts = find_encoder(model)
    if parts is None:
        raise PluginError(
            f"reinit cannot find the encoder layers of {type(model).__name__}; {ENCODER_RULE}. "
            "Disable reinit (`disable: [reinit]`) or build the model so that its encoder is one of those"
        )
    std = getattr(getattr(parts.base, "config", None), "initializer_range", None) or 0.02
    generator = torch.Generator().manual_seed(run.seed)
    layers = parts.layers
    for layer in layers[len(layers) - min(n, len(layers)):]:
        reinitialise(layer, std, generator)
