"""The device a process trains on and the numeric precision it trains in.

``--device`` is a property of the machine, not of the recipe: the CLI applies
it to the process (and to the workers it starts) through the environment,
before anything touches CUDA. ``precision`` is a study key and part of the
recipe: ``auto`` resolves here, once per run, to what this machine runs
best, and the frozen config records what it resolved to, so ``autobert
train`` replays it.
"""

from __future__ import annotations

import os
import re
from typing import Any

from autobert.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Set by `--device cpu`: train on the CPU even where a GPU is visible (inherited by worker processes).
DEVICE_ENV = "AUTOBERT_DEVICE"


def select_device(spec: str | None) -> None:
    """Make ``spec`` (``cpu``, ``cuda`` or ``cuda:N``) the device of this process and its children.

    Call before anything initialises CUDA: ``cuda:N`` narrows
    ``CUDA_VISIBLE_DEVICES`` to that GPU (numbered among those already
    visible), so the process sees it as ``cuda:0``; ``cpu`` hides every GPU.

    Raises:
        ConfigError: ``spec`` is not a device autobert knows.
    """
    if spec is None:
        return
    match = re.fullmatch(r"cpu|cuda(?::(\d+))?", spec.strip())
    if not match:
        raise ConfigError("--device", [f"--device {spec!r}: give cpu, cuda (the first GPU) or cuda:N (e.g. cuda:1)"])
    if spec.strip() == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ[DEVICE_ENV] = "cpu"
        return
    os.environ.pop(DEVICE_ENV, None)
    index = int(match.group(1) or 0)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip():
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        if index >= len(ids):
            raise ConfigError("--device", [
                f"--device {spec}: CUDA_VISIBLE_DEVICES={visible} leaves {len(ids)} GPU(s) (cuda:0 to "
                f"cuda:{len(ids) - 1}); choose one of those, or unset CUDA_VISIBLE_DEVICES"])
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[index]
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(index)


def device_kind() -> str:
    """``"cuda"`` when this process trains on a GPU, else ``"cpu"``."""
    if os.environ.get(DEVICE_ENV) == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def gpu_count() -> int:
    """GPUs visible to this process (0 with ``--device cpu`` or without CUDA)."""
    if os.environ.get(DEVICE_ENV) == "cpu":
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _gpu_words() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"{torch.cuda.get_device_name()}, compute capability {major}.{minor}"


def resolve_precision(requested: str) -> str:
    """What ``requested`` (a ``precision`` value) means on this machine: ``fp32``, ``bf16`` or ``fp16``.

    ``auto`` is bf16 on a GPU that supports it (Ampere and newer), fp16 with
    loss scaling on older GPUs, and fp32 on the CPU.

    Raises:
        ConfigError: the machine cannot run ``requested``, saying what to use instead.
    """
    if requested not in PRECISIONS:
        raise ConfigError("precision", [f"precision: {requested!r} is not a precision; use {', '.join(PRECISIONS)}"])
    kind = device_kind()
    if kind == "cpu":
        if requested == "auto":
            return "fp32"
        if requested == "fp16":
            where = "--device cpu was given" if os.environ.get(DEVICE_ENV) == "cpu" else "no CUDA GPU is visible"
            raise ConfigError("precision", [
                f"precision: fp16 needs a CUDA GPU and this run is on the CPU ({where}); use bf16 (PyTorch runs it "
                "on the CPU), fp32, or auto (fp32 on the CPU, the best precision on a GPU)"])
        return requested
    import torch

    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    if requested == "auto":
        return "bf16" if bf16 else "fp16"
    if requested == "bf16" and not bf16:
        raise ConfigError("precision", [
            f"precision: bf16 needs a GPU with bfloat16 support (compute capability 8.0, Ampere, or newer); this one "
            f"({_gpu_words()}) lacks it: use fp16 (or auto, which picks fp16 here) or fp32"])
    return requested


def precision_problems(requested: str) -> list[str]:
    """Why this machine cannot run ``requested``, as problem lines (empty when it can)."""
    try:
        resolve_precision(requested)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def trainer_arguments(precision: str) -> dict[str, Any]:
    """``TrainingArguments`` keywords for a resolved ``precision`` on this process's device.

    fp16 gets the Trainer's dynamic loss scaling; bf16 needs none.
    """
    args: dict[str, Any] = {}
    if precision == "bf16":
        args["bf16"] = True
    elif precision == "fp16":
        args["fp16"] = True
    # The Trainer runs bf16 on the CPU only when told to use it (and `--device cpu` keeps it off an Apple GPU too).
    if os.environ.get(DEVICE_ENV) == "cpu" or (precision == "bf16" and device_kind() == "cpu"):
        args["use_cpu"] = True
    return args


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the device (GPU or CPU) ran out of memory."""
    import torch

    text = str(exc).lower()
    return (isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in text
            or "can't allocate memory" in text)


def free_accelerator_memory() -> None:
    """Give back what a failed run left allocated (the caching allocator keeps it otherwise)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


__all__ = ["PRECISIONS", "select_device", "device_kind", "gpu_count", "resolve_precision", "precision_problems",
           "trainer_arguments", "is_out_of_memory", "free_accelerator_memory"]
