"""Layer-wise learning-rate decay (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?").

Lower layers hold more general knowledge, so they should move less. With ``L``
encoder layers numbered 1 (bottom) to ``L`` (top) and the base learning rate
``lr``:

- the head (everything that is neither embeddings nor a layer: pooler,
  classifier, a custom pooling head) and the top layer get ``lr``;
- layer ``i`` gets ``lr * decay ** (L - i)``;
- the embeddings get the smallest, ``lr * decay ** L``.

``llrd.decay`` is searched in [0.8, 1.0]; 1.0 is the neutral choice and leaves
the optimiser to autobert's default groups. Sun et al. found 0.95 best at a
learning rate of 2e-5. Weight decay stays off biases and LayerNorm weights.

The encoder is found by module structure (see :func:`autobert.services.find_encoder`);
a study whose model has no layers to find is refused at validation.
"""

from __future__ import annotations

from autobert import hookimpl
from autobert.errors import PluginError
from autobert.services import ENCODER_RULE, encoder_not_found, layer_depths, parameter_groups, study_model_layers


@hookimpl
def autobert_search_space(space):
    space.suggest_float("llrd.decay", 0.8, 1.0, valid="(0, 1]")


@hookimpl
def autobert_ablation():
    # 1.0 gives every layer the base rate; 0.95 is Sun et al.'s best at lr 2e-5.
    return {"off": {"llrd.decay": 1.0}, "on": {"llrd.decay": 0.95}}


@hookimpl
def autobert_validate_study(study, space):
    decay = space["llrd.decay"]
    if decay.is_fixed and decay.lowest == 1:
        return None  # switched off: any model will do
    found = study_model_layers(study)
    if found is None or found[1] is not None:
        return None
    return [encoder_not_found("llrd", study.model, found[0])]


def layer_exponents(model) -> dict[int, int]:
    """``{id(parameter): exponent}`` for the embeddings and layers; the head is absent (exponent 0)."""
    depths = layer_depths(model)
    if depths is None:
        raise PluginError(
            f"llrd cannot find the encoder layers of {type(model).__name__}; {ENCODER_RULE}. "
            "Disable llrd (`disable: [llrd]`) or build the model so that its encoder is one of those"
        )
    return depths


@hookimpl
def autobert_optimizer_param_groups(model, args, run):
    decay = run.params["llrd.decay"]
    if decay == 1.0:
        return None
    return parameter_groups(model, args.learning_rate, args.weight_decay, layer_rate=lambda depth: decay ** depth,
                            depths=layer_exponents(model))
