"""Each hook in `autobert/hookspecs.py`, shown doing its job in a real trial.

Every test registers a small technique (a class whose methods are hook
implementations) next to the built-in finetune technique, runs a real search on a tiny BERT
with an SQLite storage, and checks what the hook changed. Test names start with
the hook's name; `tests/test_docs.py` checks that every hook has one.
"""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from optuna.trial import TrialState

from autobert import Setting, hookimpl
from autobert.config.schema import load_study
from autobert.errors import ConfigError, PluginError
from autobert.run.plugin_manager import Technique, get_plugin_manager
from autobert.study.search import run_search
from autobert.study.validation import validate_study
from autobert.config.settings import declared_settings

# The `tiny_study` fixture's task (tests/conftest.py): the built-in finetune
# technique is fixed to 1 epoch at batch size 16, so a trial takes 6 steps.
TRAIN_ROWS = 96
VALIDATION_ROWS = 32
STEPS = 6


def plugin_manager(*plugins):
    """The built-in finetune technique plus ``(name, plugin)`` pairs registered like it.

    Other installed techniques are left out, so that they cannot change what a
    test observes.
    """
    pm = get_plugin_manager(only=["finetune"])
    for name, plugin in plugins:
        pm.register_technique(plugin, Technique(name, f"{__name__}:{type(plugin).__name__}", "autobert-tests", "0"))
    return pm


def search(study_path, *plugins, n_trials=1) -> optuna.Study:
    """Validate the study and run ``n_trials`` trials with ``plugins`` registered."""
    study = load_study(study_path)
    pm = plugin_manager(*plugins)
    return run_search(study, pm, validate_study(study, pm), n_trials=n_trials)


def completed(opened: optuna.Study) -> optuna.trial.FrozenTrial:
    trial = opened.trials[-1]
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    return trial


# --------------------------------------------------------------------------
# Search space
# --------------------------------------------------------------------------


def test_autobert_search_space_parameters_are_recorded_and_reach_run_params(tiny_study):
    seen = []

    class Probe:
        @hookimpl
        def autobert_search_space(self, space):
            space.suggest_categorical("probe.colour", ["red", "blue"])
            space.suggest_int("probe.width", 3, 7)

        @hookimpl
        def autobert_modify_datasets(self, run):
            seen.append(dict(run.params))

    trial = completed(search(tiny_study(), ("probe", Probe())))

    assert trial.params["probe.colour"] in {"red", "blue"}
    assert 3 <= trial.params["probe.width"] <= 7
    assert "finetune.learning_rate" in trial.params
    assert seen == [trial.params]


def test_autobert_search_space_rejects_a_parameter_outside_the_technique_namespace(tiny_study):
    class Probe:
        @hookimpl
        def autobert_search_space(self, space):
            space.suggest_float("dropout", 0.0, 0.5)

    study = load_study(tiny_study())
    with pytest.raises(PluginError, match=r"parameter 'dropout' is not namespaced.*probe"):
        validate_study(study, plugin_manager(("probe", Probe())))


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


class SettingsProbe:
    """Declares a path setting and a plain one, and records what a trial sees."""

    def __init__(self):
        self.seen = []

    @hookimpl
    def autobert_settings(self):
        return {"probe.corpus": Setting(None, help="a text file", path=True), "probe.words": 3}

    @hookimpl
    def autobert_modify_datasets(self, datasets, run):
        self.seen.append({k: v for k, v in run.settings.items() if k.startswith("probe.")})


def test_autobert_settings_reach_hooks_and_survive_export_and_replay(tiny_study, tmp_path):
    from optuna.trial import FixedTrial

    from autobert.config.schema import load_frozen
    from autobert.run.pipeline import run_pipeline
    from autobert.study.search import export_best

    (tmp_path / "corpus.txt").write_text("one document\n", encoding="utf-8")
    path = tiny_study(techniques={"finetune": {"epochs": 1, "batch_size": 16}, "probe": {"corpus": "corpus.txt"}})
    probe = SettingsProbe()
    study = load_study(path)
    pm = plugin_manager(("probe", probe))
    data = validate_study(study, pm)
    opened = run_search(study, pm, data, n_trials=1)
    assert probe.seen[-1] == {"probe.corpus": str(tmp_path / "corpus.txt"), "probe.words": 3}
    assert "probe.corpus" not in completed(opened).params  # a setting is never sampled

    # Exported to another folder, the frozen config still points at the same file.
    elsewhere = tmp_path / "exports" / "best.yaml"
    elsewhere.parent.mkdir()
    export_best(study, opened, pm, data, elsewhere)
    frozen = load_frozen(elsewhere)
    assert frozen.techniques["probe"] == {"corpus": "../corpus.txt"}
    run_pipeline(frozen, FixedTrial(frozen.params), pm, data)
    assert probe.seen[-1] == probe.seen[0]


def test_autobert_settings_are_accepted_by_validation_and_misspelt_ones_are_not(tiny_study):
    pm = plugin_manager(("probe", SettingsProbe()))
    validate_study(load_study(tiny_study(techniques={"probe": {"words": 5}})), pm)
    with pytest.raises(ConfigError) as excinfo:
        validate_study(load_study(tiny_study(techniques={"probe": {"word": 5}})), pm)
    assert "techniques.probe.word: probe has no parameter or setting 'word'" in str(excinfo.value)
    assert "(did you mean 'words'?)" in str(excinfo.value) and "its settings: corpus, words" in str(excinfo.value)


def test_autobert_settings_outside_the_technique_namespace_are_refused():
    class Bad:
        @hookimpl
        def autobert_settings(self):
            return {"finetune.corpus": None}

    with pytest.raises(PluginError, match="name its settings 'bad.<setting>'"):
        declared_settings(plugin_manager(("bad", Bad())))


# --------------------------------------------------------------------------
# Ablation
# --------------------------------------------------------------------------


def test_autobert_ablation_off_values_and_reasons_are_collected_per_technique():
    from autobert.strategy.declarations import declared_ablations

    class Switchable:
        @hookimpl
        def autobert_ablation(self):
            return {"off": {"probe.enabled": False}, "on": {"probe.enabled": True, "probe.width": 3}}

    class Unswitchable:
        @hookimpl
        def autobert_ablation(self):
            return {"reason": "it is the base recipe"}

    class Silent:
        @hookimpl
        def autobert_search_space(self, space):
            space.suggest_int("silent.width", 1, 2)

    declared = declared_ablations(plugin_manager(("probe", Switchable()), ("base", Unswitchable()), ("silent", Silent())))
    assert declared["probe"].off == {"probe.enabled": False}
    assert declared["probe"].on == {"probe.enabled": True, "probe.width": 3}
    assert declared["base"].off is None and declared["base"].reason == "it is the base recipe"
    assert declared["silent"].off is None and "declares no off value" in declared["silent"].reason


def test_autobert_ablation_off_values_outside_the_technique_namespace_are_refused():
    from autobert.strategy.declarations import declared_ablations

    class Bad:
        @hookimpl
        def autobert_ablation(self):
            return {"off": {"finetune.epochs": 1}}

    with pytest.raises(PluginError, match="off values must be the technique's own parameters"):
        declared_ablations(plugin_manager(("bad", Bad())))


# --------------------------------------------------------------------------
# Study validation
# --------------------------------------------------------------------------


def test_autobert_validate_study_problems_are_reported_with_the_others(tiny_study):
    class Probe:
        @hookimpl
        def autobert_validate_study(self, study):
            if study.max_length < 64:
                return [f"max_length: probe needs at least 64 tokens, got {study.max_length}; raise it"]

    study = load_study(tiny_study(metric="acuracy"))
    with pytest.raises(ConfigError) as excinfo:
        validate_study(study, plugin_manager(("probe", Probe())))

    assert excinfo.value.problems[-1] == "max_length: probe needs at least 64 tokens, got 32; raise it"
    assert any(p.startswith("metric: unknown metric 'acuracy'") for p in excinfo.value.problems)
    assert "probe needs at least 64 tokens" in str(excinfo.value)


def test_autobert_validate_study_returning_nothing_passes(tiny_study):
    class Probe:
        @hookimpl
        def autobert_validate_study(self, study):
            return []

    data = validate_study(load_study(tiny_study()), plugin_manager(("probe", Probe())))
    assert len(data.splits["train"]) == TRAIN_ROWS


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def test_autobert_modify_datasets_replaces_train_split(tiny_study):
    sizes_seen = []

    class Probe:
        @hookimpl
        def autobert_modify_datasets(self, datasets):
            sizes_seen.append(len(datasets["train"]))
            datasets["train"] = datasets["train"].select(range(32))

    opened = search(tiny_study(), ("probe", Probe()), n_trials=2)

    assert [t.user_attrs["steps"] for t in opened.trials] == [2, 2]  # 32 rows / batch 16
    # Each trial starts from the task's own data, not the previous trial's.
    assert sizes_seen == [TRAIN_ROWS, TRAIN_ROWS]


def test_autobert_modify_datasets_extra_columns_reach_compute_loss_as_extras(tiny_study):
    extras_seen = []

    class Probe:
        @hookimpl
        def autobert_modify_datasets(self, datasets):
            datasets["train"] = datasets["train"].map(lambda row: {"weight": float(len(row["text"]))})

        @hookimpl(wrapper=True)
        def autobert_compute_loss(self, inputs, extras):
            assert "weight" not in inputs
            extras_seen.append(extras["weight"].clone())
            return (yield)

    completed(search(tiny_study(), ("probe", Probe())))

    assert len(extras_seen) == STEPS
    for weights in extras_seen:
        assert weights.shape == (16,) and weights.dtype.is_floating_point
        assert (weights > 0).all()


def test_autobert_augmenters_a_registered_method_is_searched_and_extends_the_training_split(tiny_study):
    from autobert.plugins.augmentation import Augmenter

    sizes = []

    class Shout(Augmenter):
        namespace = "probe"

        def search_space(self, space):
            space.suggest_int("probe.copies", 2, 2)

        def augment(self, texts, labels, run, seed):
            return [[text.upper()] * run.params["probe.copies"] for text in texts]

    class Probe:
        @hookimpl
        def autobert_augmenters(self):
            return {"shout": Shout()}

        @hookimpl(trylast=True)
        def autobert_modify_datasets(self, datasets):
            sizes.append({split: len(ds) for split, ds in datasets.items()})

    path = tiny_study(techniques={"finetune": {"epochs": 1, "batch_size": 16},
                                  "augmentation": {"ratio": 0.25, "method": "shout"}})
    study = load_study(path)
    pm = get_plugin_manager(only=["finetune", "augmentation"])
    pm.register_technique(Probe(), Technique("probe", f"{__name__}:Probe", "autobert-tests", "0"))
    trial = completed(run_search(study, pm, validate_study(study, pm), n_trials=1))

    assert trial.params["augmentation.method"] == "shout" and trial.params["probe.copies"] == 2
    assert sizes == [{"train": TRAIN_ROWS + 2 * TRAIN_ROWS // 4, "validation": VALIDATION_ROWS, "test": VALIDATION_ROWS}]


def test_autobert_tokenize_output_is_what_the_model_sees(tiny_study):
    batches = []
    constant = []

    class Probe:
        @hookimpl
        def autobert_tokenize(self, texts, tokenizer):
            constant[:] = [tokenizer.cls_token_id, 7, 8, tokenizer.sep_token_id]
            return {"input_ids": [constant] * len(texts), "attention_mask": [[1] * 4] * len(texts)}

        @hookimpl(wrapper=True)
        def autobert_compute_loss(self, inputs):
            batches.append(inputs["input_ids"].clone())
            return (yield)

    completed(search(tiny_study(), ("probe", Probe())))

    assert len(batches) == STEPS
    for ids in batches:
        assert ids.tolist() == [constant] * len(ids)


def test_autobert_tokenize_returning_none_falls_back_to_the_default(tiny_study):
    calls = []
    lengths = set()

    class Probe:
        @hookimpl
        def autobert_tokenize(self, texts, max_length):
            calls.append((len(texts), max_length))
            return None

        @hookimpl(wrapper=True)
        def autobert_compute_loss(self, inputs):
            lengths.add(inputs["input_ids"].shape[1])
            return (yield)

    completed(search(tiny_study(max_length=8), ("probe", Probe())))

    assert calls and all(max_length == 8 for _, max_length in calls)
    # The default tokenizer truncated at the study's max_length.
    assert lengths == {8}


# --------------------------------------------------------------------------
# Further pretraining
# --------------------------------------------------------------------------


def test_autobert_further_pretrain_checkpoint_is_the_one_trained(tiny_study):
    from transformers import BertModel

    built_from = []
    embeddings = {}

    class Probe:
        @hookimpl
        def autobert_further_pretrain(self, checkpoint, datasets, run):
            assert len(datasets["train"]) == TRAIN_ROWS
            encoder = BertModel.from_pretrained(checkpoint)
            embeddings["original"] = encoder.embeddings.word_embeddings.weight.detach().clone()
            with torch.no_grad():
                encoder.embeddings.word_embeddings.weight.neg_()
            out = run.workdir / "further-pretrained"
            encoder.save_pretrained(out)
            run.tokenizer.save_pretrained(out)
            return str(out)

        @hookimpl
        def autobert_build_model(self, checkpoint):
            built_from.append(checkpoint)

        @hookimpl
        def autobert_modify_model(self, model):
            embeddings["trained"] = model.bert.embeddings.word_embeddings.weight.detach().clone()

    completed(search(tiny_study(), ("probe", Probe())))

    assert built_from[0].endswith("further-pretrained")
    assert torch.equal(embeddings["trained"], -embeddings["original"])


def test_autobert_masking_strategies_a_registered_strategy_is_searched_and_masks_the_pretraining(tiny_study):
    import numpy as np

    from autobert.plugins.masking import MaskingStrategy

    events = []

    class FirstTokens(MaskingStrategy):
        def prepare(self, context):
            events.append(("prepare", context.stage, len(context.texts)))

        def select(self, example, budget, rng):
            chosen = np.zeros(len(example.input_ids), dtype=bool)
            chosen[np.flatnonzero(example.maskable)[:budget]] = True
            events.append(("select", tuple(np.flatnonzero(chosen))))
            return chosen

    class Probe:
        @hookimpl
        def autobert_masking_strategies(self):
            return {"first_tokens": FirstTokens}

    path = tiny_study(techniques={
        "finetune": {"epochs": 1, "batch_size": 16},
        "further_pretraining": {"stages": "task", "task_steps": 2, "batch_size": 4, "cache": False},
        "masking": {"strategy": "first_tokens", "probability": 0.2},
    })
    study = load_study(path)
    pm = get_plugin_manager(only=["finetune", "further_pretraining", "masking"])
    pm.register_technique(Probe(), Technique("probe", f"{__name__}:Probe", "autobert-tests", "0"))
    trial = completed(run_search(study, pm, validate_study(study, pm), n_trials=1))

    assert trial.params["masking.strategy"] == "first_tokens"
    assert events[0] == ("prepare", "task", TRAIN_ROWS)
    selections = [e[1] for e in events[1:]]
    assert len(selections) == 2 * 4  # 2 steps of 4 examples
    assert all(chosen and chosen[0] == 1 and chosen == tuple(range(1, 1 + len(chosen))) for chosen in selections)


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


def test_autobert_build_model_returned_model_is_trained(tiny_study):
    from transformers import BertForSequenceClassification

    built = []
    forward_calls = []

    class Probe:
        @hookimpl
        def autobert_build_model(self, checkpoint, run):
            model = BertForSequenceClassification.from_pretrained(
                checkpoint, num_labels=run.num_labels, id2label=run.id2label, label2id=run.label2id,
                classifier_dropout=0.0,
            )
            model.register_forward_pre_hook(lambda module, args: forward_calls.append(module.training))
            built.append(model)
            return model

        @hookimpl
        def autobert_modify_model(self, model):
            assert model is built[0]

    completed(search(tiny_study(), ("probe", Probe())))

    assert len(built) == 1
    assert built[0].config.classifier_dropout == 0.0
    assert forward_calls.count(True) == STEPS  # every training step ran on it
    assert False in forward_calls  # and so did the evaluation


def test_autobert_build_model_is_seeded_with_the_trial_seed(tiny_study):
    heads = []

    class Probe:
        @hookimpl
        def autobert_modify_model(self, model):
            heads.append(model.classifier.weight.detach().clone())

    search(tiny_study(), ("probe", Probe()), n_trials=2)

    # The classification head is initialised randomly, identically in every trial.
    assert len(heads) == 2 and torch.equal(heads[0], heads[1])


def test_autobert_modify_model_runs_before_training(tiny_study):
    state = {}

    class Probe:
        @hookimpl
        def autobert_modify_model(self, model):
            model.bert.embeddings.requires_grad_(False)
            state["model"] = model
            state["frozen"] = model.bert.embeddings.word_embeddings.weight.detach().clone()
            state["trained"] = model.classifier.weight.detach().clone()

    completed(search(tiny_study(), ("probe", Probe())))

    model = state["model"]
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, state["frozen"])
    assert not torch.equal(model.classifier.weight, state["trained"])


# --------------------------------------------------------------------------
# Optimisation
# --------------------------------------------------------------------------


def test_autobert_training_arguments_changes_reach_the_trainer(tiny_study):
    prefilled = {}

    class Probe:
        # finetune is tryfirst: any other technique is called after it, so this value wins.
        @hookimpl
        def autobert_training_arguments(self, args):
            prefilled.update(args)
            args["num_train_epochs"] = 2

    trial = completed(search(tiny_study(), ("probe", Probe())))

    assert trial.user_attrs["steps"] == 2 * STEPS
    assert prefilled["num_train_epochs"] == 1  # what finetune had set
    assert prefilled["seed"] == 0 and prefilled["save_strategy"] == "no"


def test_autobert_training_arguments_eval_steps_set_by_a_plugin_is_kept(tiny_study):
    evaluations = []

    class Probe:
        @hookimpl
        def autobert_training_arguments(self, args):
            args["eval_steps"] = 2

        @hookimpl
        def autobert_trainer_callbacks(self):
            from transformers import TrainerCallback

            class Record(TrainerCallback):
                def on_evaluate(self, args, state, control, **kwargs):
                    evaluations.append(state.global_step)

            return [Record()]

    completed(search(tiny_study(), ("probe", Probe())))

    assert evaluations == [2, 4, 6]


def test_autobert_optimizer_param_groups_lr_appears_in_the_optimizer(tiny_study):
    groups_seen = []
    state = {}

    class Probe:
        @hookimpl
        def autobert_optimizer_param_groups(self, model, args):
            assert args.learning_rate > 0
            state["model"] = model
            state["encoder"] = model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
            head = [p for n, p in model.named_parameters() if n.startswith("classifier.")]
            encoder = [p for n, p in model.named_parameters() if not n.startswith("classifier.")]
            return [
                {"params": head, "lr": 0.01, "weight_decay": 0.0},
                {"params": encoder, "lr": 0.0, "weight_decay": 0.0},
            ]

        @hookimpl
        def autobert_trainer_callbacks(self):
            from transformers import TrainerCallback

            class Record(TrainerCallback):
                def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
                    groups_seen.extend(
                        (g.get("initial_lr", g["lr"]), len(g["params"])) for g in optimizer.param_groups
                    )

            return [Record()]

    completed(search(tiny_study(), ("probe", Probe())))

    model = state["model"]
    assert groups_seen == [(0.01, 2), (0.0, len(list(model.parameters())) - 2)]
    # An encoder with learning rate 0 does not move.
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, state["encoder"])


# --------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------


def test_autobert_compute_loss_nan_fails_the_trial_and_the_study_goes_on(tiny_study):
    class Probe:
        @hookimpl(wrapper=True)
        def autobert_compute_loss(self, run):
            loss = yield
            return loss * math.nan if run.trial.number == 0 else loss

    opened = search(tiny_study(), ("probe", Probe()), n_trials=2)

    failed, ok = opened.trials
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"].startswith("the training loss became nan at step 1;")
    assert ok.state == TrialState.COMPLETE


def test_autobert_compute_loss_wrapper_changes_the_loss_that_is_optimised(tiny_study):
    state = {}
    losses = []

    class Probe:
        @hookimpl(wrapper=True)
        def autobert_compute_loss(self, model, outputs):
            if "before" not in state:
                state["model"] = model
                state["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
            loss = yield
            assert loss is outputs.loss  # the default's cross-entropy
            losses.append(loss.item())
            return loss * 0.0

    # Without weight decay, a zero loss gives zero AdamW updates.
    study = tiny_study(techniques={"finetune": {"epochs": 1, "batch_size": 16, "warmup_ratio": 0.0,
                                                "weight_decay": 0.0}})
    completed(search(study, ("probe", Probe())))

    assert len(losses) == STEPS and all(loss > 0 for loss in losses)
    after = dict(state["model"].named_parameters())
    assert all(torch.equal(after[n], before) for n, before in state["before"].items())


def test_autobert_compute_loss_first_non_none_result_wins(tiny_study):
    class Probe:
        @hookimpl
        def autobert_compute_loss(self, outputs):
            # Whatever the labels say, train towards label 0.
            return torch.nn.functional.cross_entropy(
                outputs.logits, torch.zeros(len(outputs.logits), dtype=torch.long)
            )

        @hookimpl
        def autobert_metrics(self):
            return {"share_of_zeros": lambda logits, labels: float((logits.argmax(axis=-1) == 0).mean())}

    trial = completed(search(tiny_study(), ("probe", Probe())))

    assert trial.user_attrs["metrics"]["share_of_zeros"] == 1.0


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def test_autobert_metrics_registers_a_metric_the_study_can_optimise(tiny_study):
    shapes = []

    def share_positive(logits, labels):
        shapes.append((logits.shape, labels.shape))
        return float((logits.argmax(axis=-1) == 1).mean())

    class Probe:
        @hookimpl
        def autobert_metrics(self):
            return {"share_positive": share_positive}

    path = tiny_study(metric="share_positive")
    with pytest.raises(ConfigError, match="unknown metric 'share_positive'"):
        validate_study(load_study(path), plugin_manager())

    opened = search(path, ("probe", Probe()))

    trial = completed(opened)
    assert opened.user_attrs["metric"] == "share_positive"
    assert trial.value == trial.user_attrs["metrics"]["share_positive"]
    assert 0.0 <= trial.value <= 1.0
    assert "accuracy" in trial.user_attrs["metrics"]  # the defaults are still computed
    assert shapes and all(s == ((VALIDATION_ROWS, 2), (VALIDATION_ROWS,)) for s in shapes)


def test_autobert_trainer_callbacks_callback_sees_training_steps(tiny_study):
    steps = []
    max_steps = []

    class Probe:
        @hookimpl
        def autobert_trainer_callbacks(self, run):
            from transformers import TrainerCallback

            class Record(TrainerCallback):
                def on_train_begin(self, args, state, control, **kwargs):
                    max_steps.append(state.max_steps)

                def on_step_end(self, args, state, control, **kwargs):
                    steps.append(state.global_step)

            return [Record()]

    completed(search(tiny_study(), ("probe", Probe())))

    assert max_steps == [STEPS]
    assert steps == list(range(1, STEPS + 1))


def test_autobert_trainer_callbacks_raising_trial_pruned_prunes_the_trial(tiny_study):
    class Probe:
        @hookimpl
        def autobert_trainer_callbacks(self):
            from transformers import TrainerCallback

            class StopEarly(TrainerCallback):
                def on_step_end(self, args, state, control, **kwargs):
                    if state.global_step == 3:
                        raise optuna.TrialPruned("probe stopped at step 3")

            return [StopEarly()]

    trial = search(tiny_study(), ("probe", Probe())).trials[0]

    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["pruned_reason"] == "probe stopped at step 3"


# --------------------------------------------------------------------------
# Plugins that break the contract
# --------------------------------------------------------------------------


def test_plugin_with_unknown_hook_name_raises_plugin_error_naming_it():
    class Misspelt:
        @hookimpl
        def autobert_modify_dataset(self, datasets):
            pass

    pm = plugin_manager()
    with pytest.raises(PluginError) as excinfo:
        pm.register_technique(Misspelt(), Technique("misspelt", "misspelt_pkg", "misspelt-dist", "1.2"))

    message = str(excinfo.value)
    assert "technique 'misspelt' (misspelt_pkg, from misspelt-dist 1.2)" in message
    assert "unknown hook(s) autobert_modify_dataset" in message
    assert "misspelt" not in pm.techniques and pm.get_plugin("misspelt") is None


def test_plugin_hook_with_unknown_argument_raises_plugin_error_naming_it():
    class WrongArgs:
        @hookimpl
        def autobert_metrics(self, run):
            return {}

    pm = plugin_manager()
    with pytest.raises(PluginError) as excinfo:
        pm.register_technique(WrongArgs(), Technique("wrongargs", "wrongargs_pkg", "wrongargs-dist", "0.1"))

    message = str(excinfo.value)
    assert "technique 'wrongargs' (wrongargs_pkg, from wrongargs-dist 0.1)" in message
    assert "does not match the autobert hook contract" in message
    assert "run" in message
    assert "wrongargs" not in pm.techniques


def test_plugin_with_a_taken_name_raises_plugin_error_naming_both():
    class Impostor:
        @hookimpl
        def autobert_metrics(self):
            return {}

    pm = plugin_manager()
    with pytest.raises(PluginError, match=r"'finetune' \(impostor_pkg, from impostor-dist 9\) has the same name as autobert.plugins.finetune"):
        pm.register_technique(Impostor(), Technique("finetune", "impostor_pkg", "impostor-dist", "9"))


def test_autobert_trial_cost_terms_reach_the_trial_s_prediction(tiny_study):
    class Teacher:
        @hookimpl
        def autobert_search_space(self, space):
            space.suggest_categorical("teacher.enabled", [True])

        @hookimpl
        def autobert_trial_cost(self, params, train_rows):
            return {"teacher": 10 * train_rows} if params["teacher.enabled"] else None

    study = load_study(tiny_study())
    pm = plugin_manager(("teacher", Teacher()))
    opened = run_search(study, pm, validate_study(study, pm), n_trials=1)
    trial = opened.trials[0]
    terms = trial.user_attrs["cost_terms"]
    assert terms["teacher: teacher"] == 10 * TRAIN_ROWS
    assert terms["finetune: training"] == TRAIN_ROWS  # 1 epoch
    assert trial.user_attrs["predicted_work"] == pytest.approx(sum(terms.values()), abs=1)
    # The teacher's work is most of the prediction: without it the trial is predicted far cheaper.
    calibration = opened.user_attrs["calibration"]
    assert trial.user_attrs["predicted_seconds"] >= calibration["overhead"] + 10 * TRAIN_ROWS * calibration["seconds_per_pass"]


# --------------------------------------------------------------------------
# Cost knobs
# --------------------------------------------------------------------------


def test_autobert_cost_knobs_are_collected_per_technique_in_their_declared_order():
    from autobert.strategy.declarations import CostKnob, declared_cost_knobs, passes_parameter

    class Paraphrase:
        @hookimpl
        def autobert_cost_knobs(self):
            return {"paraphrase.copies": [8, 4, 2, 1], "paraphrase.rounds": "down"}  # bare steps

    pm = plugin_manager(("paraphrase", Paraphrase()))
    knobs = declared_cost_knobs(pm)
    assert knobs["paraphrase"] == [CostKnob("paraphrase", "paraphrase.copies", (8, 4, 2, 1)),
                                   CostKnob("paraphrase", "paraphrase.rounds", "down")]
    assert knobs["finetune"] == [CostKnob("finetune", "finetune.epochs", "down", passes=True)]
    assert passes_parameter(pm) == "finetune.epochs"


def test_autobert_cost_knobs_passes_scale_the_evaluation_s_work():
    from types import SimpleNamespace

    from autobert import FORWARD_PASS
    from autobert.strategy.budget import trial_work

    class Trainer:
        """A training technique of its own, in place of finetune: its rounds are passes over the data."""

        @hookimpl
        def autobert_cost_knobs(self):
            return {"trainer.rounds": {"steps": "down", "passes": True}}

    study = SimpleNamespace(cache_path=None, evaluations_per_epoch=2)
    rows = {"train": TRAIN_ROWS, "validation": VALIDATION_ROWS}
    pm = get_plugin_manager(only=[])
    pm.register_technique(Trainer(), Technique("trainer", f"{__name__}:Trainer", "autobert-tests", "0"))
    assert trial_work({"trainer.rounds": 3}, study, pm, rows, {})["evaluation"] == \
        pytest.approx(VALIDATION_ROWS * 2 * 3 * FORWARD_PASS)
    # finetune's epochs are declared the same way.
    assert trial_work({"finetune.epochs": 3}, study, plugin_manager(), rows, {})["evaluation"] == \
        pytest.approx(VALIDATION_ROWS * 2 * 3 * FORWARD_PASS)
    # With no technique counting passes, one pass is evaluated.
    assert trial_work({}, study, get_plugin_manager(only=[]), rows, {})["evaluation"] == \
        pytest.approx(VALIDATION_ROWS * 2 * FORWARD_PASS)


@pytest.mark.parametrize("answer, message", [
    ({"finetune.epochs": "down"}, r"technique 'bad' \(its autobert_cost_knobs\) declares 'finetune.epochs'; "
                                  r"cost knobs must be the technique's own parameters \('bad.<parameter>'\)"),
    ({"bad.copies": {"step": [2, 1]}}, r"technique 'bad' \(its autobert_cost_knobs\) declares 'bad.copies' as"),
    ({"bad.copies": []}, r"technique 'bad' \(its autobert_cost_knobs\) declares 'bad.copies' as"),
    ({"bad.copies": {"steps": "up"}}, r"give \{'steps': 'down'\}"),
    ({"bad.copies": {"steps": "down", "passes": "yes"}}, r"'passes': True where it counts passes"),
    (["bad.copies"], r"technique 'bad' \(its autobert_cost_knobs\) returned \['bad.copies'\]"),
])
def test_autobert_cost_knobs_malformed_are_refused_naming_the_technique(answer, message):
    from autobert.strategy.declarations import declared_cost_knobs

    class Bad:
        @hookimpl
        def autobert_cost_knobs(self):
            return answer

    with pytest.raises(PluginError, match=message):
        declared_cost_knobs(plugin_manager(("bad", Bad())))


def test_autobert_cost_knobs_counting_passes_twice_are_refused_naming_both():
    from autobert.strategy.declarations import declared_cost_knobs

    class Rounds:
        @hookimpl
        def autobert_cost_knobs(self):
            return {"rounds.count": {"steps": "down", "passes": True}}

    with pytest.raises(PluginError, match=r"'finetune.epochs' \(finetune\) and 'rounds.count' \(rounds\) both declare"):
        declared_cost_knobs(plugin_manager(("rounds", Rounds())))
