"""Fine-tuning with AdamW, linear warmup and linear decay.

The usual BERT recipe (Devlin et al. 2019): learning rate, epochs, batch size,
warmup share and weight decay. Every study searches it.
"""

from autobert import hookimpl


@hookimpl
def autobert_search_space(space):
    space.suggest_float("finetune.learning_rate", 1e-5, 1e-4, log=True)
    space.suggest_int("finetune.epochs", 1, 4)
    space.suggest_categorical("finetune.batch_size", [16, 32])
    space.suggest_float("finetune.warmup_ratio", 0.0, 0.2)
    space.suggest_float("finetune.weight_decay", 0.0, 0.1)


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
