"""Fine-tuning with AdamW, linear warmup and linear decay.

The usual BERT recipe (Devlin et al. 2019): learning rate, epochs, batch size,
warmup share and weight decay. Every study searches it.

The setting ``techniques.finetune.group_by_length`` (default ``true``) batches
sentences of similar length together: the rows are shuffled, cut into
mega-batches of up to 50 batches, and each mega-batch is sorted by length, so
that the collator's per-batch padding has little to add. Evaluation batches are
grouped the same way; metrics do not depend on the order of the rows.
``false`` gives uniformly random batches.
"""

from autobert import Setting, hookimpl

GROUP_BY_LENGTH = "finetune.group_by_length"


@hookimpl
def autobert_search_space(space):
    space.suggest_float("finetune.learning_rate", 1e-5, 1e-4, log=True)
    space.suggest_int("finetune.epochs", 1, 4, valid="[1, inf)")
    space.suggest_categorical("finetune.batch_size", [16, 32])
    space.suggest_float("finetune.warmup_ratio", 0.0, 0.2, valid="[0, 1]")
    space.suggest_float("finetune.weight_decay", 0.0, 0.1, valid="[0, inf)")


@hookimpl
def autobert_ablation():
    return {"reason": "the base recipe (learning rate, epochs, batch size) every other technique trains with"}


@hookimpl
def autobert_cost_knobs():
    # Fewer epochs: what a timed search lowers to make a recipe fit; each epoch is a pass over the data,
    # and the engine evaluates at every one.
    return {"finetune.epochs": {"steps": "down", "passes": True}}


@hookimpl
def autobert_trial_cost(params, train_rows):
    return {"training": train_rows * float(params.get("finetune.epochs", 1))}


@hookimpl
def autobert_settings():
    return {GROUP_BY_LENGTH: Setting(True, help="batch sentences of similar length together (less padding, "
                                                "faster on CPU); false = uniformly random batches")}


@hookimpl
def autobert_validate_study(study, settings):
    value = settings.get(GROUP_BY_LENGTH, True)
    if not isinstance(value, bool):
        return [f"techniques.{GROUP_BY_LENGTH}: must be true or false, got {value!r}; write "
                "`group_by_length: true` (batch similar lengths together) or `false` (uniformly random batches)"]
    return None


# First, so that other techniques see (and may change) the base recipe.
@hookimpl(tryfirst=True)
def autobert_training_arguments(args, run):
    p = run.params
    args["learning_rate"] = p["finetune.learning_rate"]
    args["num_train_epochs"] = p["finetune.epochs"]
    args["per_device_train_batch_size"] = p["finetune.batch_size"]
    # transformers reads a float below 1 as a share of the total steps.
    args["warmup_steps"] = float(p["finetune.warmup_ratio"])
    args["weight_decay"] = p["finetune.weight_decay"]
    args["lr_scheduler_type"] = "linear"
    if (getattr(run, "settings", None) or {}).get(GROUP_BY_LENGTH, True):
        args["train_sampling_strategy"] = "group_by_length"
