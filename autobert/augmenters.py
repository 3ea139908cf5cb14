"""The augmenter extension point: what a method registered through ``autobert_augmenters`` must do, and the registry.

Shared by the ``augmentation`` technique, which draws a method and applies it,
and every technique that offers a method (the built-in ``eda``,
``contextual`` and ``backtranslation``, and any third-party one).
"""

from __future__ import annotations

from typing import Any
from autobert.errors import PluginError

__all__ = ["Augmenter", "registered_augmenters"]


class Augmenter:
    """One data-augmentation method, chosen per trial by ``augmentation.method``.

    Lifecycle: every plugin's ``autobert_augmenters(settings)`` maps names
    to augmenters; the ``augmentation`` technique draws ``augmentation.method``
    among the names, then calls the chosen augmenter's :meth:`search_space` (so
    a method's parameters exist only in the trials that use it). Once per
    trial it picks the training rows to augment and calls :meth:`augment` on
    their texts, unless the cache under ``run.cache_dir`` already holds the
    result for the same :meth:`identity`, seed, rows and training data.

    Invariants: ``augment`` sees training texts only, never validation or test
    ones; it returns one list per input text, in order; it is deterministic
    for a given ``seed``, since its output is cached and shared by every trial
    with the same identity. The technique gives each new text its source
    row's label (and every other column).

    Attributes:
        namespace: The technique that owns the method's parameters and settings
            (its entry-point name). The default :meth:`identity` hashes every
            parameter and setting under it, and ``version``.
        version: Bump when the method's output changes for the same inputs, so
            that cached results are not reused.
    """

    namespace: str = ""
    version: int = 1

    def search_space(self, space: Any) -> None:
        """Draw this method's parameters (``space.suggest_*``, named ``<namespace>.<param>``).

        Called only in trials that chose this method. The default draws nothing.
        """

    def identity(self, run: Any) -> dict[str, Any]:
        """Everything the method's output depends on, besides the texts, labels and seed.

        The default: ``version`` and this trial's parameters and settings under
        ``namespace``. A method that reads anything else must add it.
        """
        prefix = f"{self.namespace}."
        return {
            "version": self.version,
            "params": {k: v for k, v in sorted(run.params.items()) if k.startswith(prefix)},
            "settings": {k: v for k, v in sorted(run.settings.items()) if k.startswith(prefix)},
        }

    def cost(self, params: dict[str, Any], train_size: int) -> tuple[float, float]:
        """What augmenting one source text costs, for the search's cost model.

        Returns:
            ``(new_texts, work)``: the new texts it yields (each becomes a
            training row, trained on every epoch) and the work of making
            them, in example passes (see ``autobert_trial_cost``; a forward
            pass is about a third of one). The default: one new text, free.
        """
        return 1.0, 0.0

    def augment(self, texts: list[str], labels: list[int], run: Any, seed: int) -> list[list[str]]:
        """Return new texts for each of ``texts``.

        Args:
            texts: The training texts chosen for augmentation.
            labels: Their label ids (``run.label_names[i]`` names one), e.g.
                for label-conditioned methods.
            run: The trial (``run.params``, ``run.settings``, ``run.study``);
                ``run.metadata["augmentation"]["train_size"]`` is the size of
                the whole training split, for size-dependent defaults.
            seed: Seed every random choice with it.

        Returns:
            One list per text, in order, of new texts (possibly empty). A
            new text equal to its source is dropped by the technique.
        """
        raise NotImplementedError


def registered_augmenters(hooks: Any, settings: dict[str, Any],
                          unavailable: dict[str, str] | None = None) -> dict[str, Augmenter]:
    """``{name: augmenter}`` from every plugin's ``autobert_augmenters(settings)``.

    ``hooks`` is the plugin manager's relay (``space.hooks``, ``run.hooks``);
    ``None`` (a space or run built outside a plugin manager) registers nothing.
    A method registered as a string cannot run with these settings (the string
    says why and what to set); it is left out, and put in ``unavailable`` if given.

    Raises:
        PluginError: two plugins register the same name, or a value is no augmenter.
    """
    found: dict[str, Augmenter] = {}
    owners: dict[str, str] = {}
    if hooks is None:
        return found
    for impl in hooks.autobert_augmenters.get_hookimpls():
        answer = impl.function(*[{"settings": settings}[arg] for arg in impl.argnames])
        for name, augmenter in (answer or {}).items():
            if name in found:
                raise PluginError(f"techniques {owners[name]!r} and {impl.plugin_name!r} both register the augmenter "
                                  f"{name!r}; disable one of them (disable: [{impl.plugin_name}])")
            if isinstance(augmenter, str):
                if unavailable is not None:
                    unavailable[name] = augmenter
                continue
            if not isinstance(augmenter, Augmenter):
                raise PluginError(f"technique {impl.plugin_name!r} registers {name!r} as {type(augmenter).__name__}; "
                                  "an augmenter must subclass autobert.augmenters.Augmenter (or be a string: why the "
                                  "method cannot run with these settings)")
            found[name], owners[name] = augmenter, impl.plugin_name
    return found
