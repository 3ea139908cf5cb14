"""How the encoder's hidden states become the one vector the classifier sees.

``pooling.kind`` chooses among:

- ``cls``: the last layer's [CLS] vector through the encoder's own pooler,
  the standard transformers head (Devlin et al. 2019);
- ``mean`` / ``max``: the masked mean / maximum of the last layer's token
  vectors, padding ignored (Reimers & Gurevych 2019);
- ``concat_last_k``: the [CLS] vectors of the last ``pooling.k`` layers,
  concatenated (Devlin et al. 2019, sec. 5.3), k capped by the layer count;
- ``scalar_mix``: a learned softmax-weighted sum of every layer's [CLS] vector,
  embeddings included (Peters et al. 2018; Tenney et al. 2019);
- ``cnn_all_cls``: the [CLS] vectors of all layers stacked and fed to a 1-D
  CNN over the layer axis, then max-pooled (Mozafari et al. 2019).

``cls`` leaves the model to autobert's default, so its export needs no remote
code. Every other kind builds
:class:`~autobert.heads.AutobertPooledForSequenceClassification`,
whose ``save_pretrained`` folder carries its own modeling file and loads with
``trust_remote_code=True``; its encoder is ``model.base_model``.
"""

from autobert import hookimpl

KINDS = ["cls", "mean", "max", "concat_last_k", "scalar_mix", "cnn_all_cls"]


@hookimpl
def autobert_search_space(space):
    if space.suggest_categorical("pooling.kind", KINDS) == "concat_last_k":
        space.suggest_int("pooling.k", 2, 4, valid="[1, inf)")


@hookimpl
def autobert_ablation():
    # cls is the standard head; mean is Reimers & Gurevych's choice.
    return {"off": {"pooling.kind": "cls"}, "on": {"pooling.kind": "mean"}}


@hookimpl
def autobert_build_model(checkpoint, run):
    kind = run.params["pooling.kind"]
    if kind == "cls":
        return None
    from autobert.heads import AutobertPooledForSequenceClassification

    return AutobertPooledForSequenceClassification.from_encoder(
        checkpoint, pooling=kind, pooling_k=run.params.get("pooling.k", 2),
        id2label=run.id2label, label2id=run.label2id,
    )
