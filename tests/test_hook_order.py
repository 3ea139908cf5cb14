"""Order is declared, never an accident of registration (docs/plugin_hooks.md, "Order").

Where the order of two techniques' implementations changes the result, they
sit in different tiers (a wrapper around everything, ``tryfirst``, plain,
``trylast``), so registering the techniques in another order calls them in
the same order.
"""

from __future__ import annotations

import pytest

from autobert import hookimpl, hookspecs
from autobert.run.plugin_manager import DEFAULTS_NAME, PluginManager, get_plugin_manager

#: Hooks whose implementations change what the next one sees, or where the first answer wins.
ORDERED = ("autobert_build_model", "autobert_compute_loss", "autobert_further_pretrain", "autobert_modify_datasets",
           "autobert_modify_model", "autobert_optimizer_param_groups", "autobert_tokenize",
           "autobert_training_arguments")


def reregistered(pm: PluginManager, order: list[str]) -> PluginManager:
    """A plugin manager with ``pm``'s plugins, its techniques registered in ``order`` (the defaults first, always)."""
    other = PluginManager()
    other.register(pm.get_plugin(DEFAULTS_NAME), name=DEFAULTS_NAME)
    for name in order:
        other.register_technique(pm.get_plugin(name), pm.techniques[name])
    return other


def tier(impl) -> str:
    kind = "wrapper" if (impl.wrapper or impl.hookwrapper) else "plain"
    return kind + ("-tryfirst" if impl.tryfirst else "-trylast" if impl.trylast else "")


def call_order(pm: PluginManager, hook: str, **kwargs) -> list[str]:
    """The techniques in the order ``hook`` calls them, recorded by calling it with recorders in their place."""
    called: list[str] = []
    for impl in getattr(pm.hook, hook).get_hookimpls():
        name = impl.plugin_name
        if impl.wrapper or impl.hookwrapper:
            def recorder(*args, _name=name):
                called.append(_name)
                return (yield)
        else:
            def recorder(*args, _name=name):
                called.append(_name)
        impl.function = recorder
    getattr(pm.hook, hook)(**kwargs)
    return called


@pytest.fixture(scope="module")
def installed() -> PluginManager:
    return get_plugin_manager()


def test_built_ins_never_share_a_tier_where_order_matters(installed):
    clashes = []
    for hook in sorted(n for n in vars(hookspecs) if n.startswith("autobert_")):
        tiers: dict[str, list[str]] = {}
        for impl in getattr(installed.hook, hook).get_hookimpls():
            if impl.plugin_name != DEFAULTS_NAME:
                tiers.setdefault(tier(impl), []).append(impl.plugin_name)
        for name, plugins in tiers.items():
            if len(plugins) > 1 and (name != "plain" or hook in ORDERED):
                clashes.append(f"{hook}: {', '.join(plugins)} are all {name}")
    assert not clashes, "the registration order would decide between them; declare the order instead:\n" + "\n".join(clashes)


@pytest.mark.parametrize("hook", ["autobert_modify_datasets", "autobert_compute_loss"])
def test_swapping_the_registration_order_calls_the_techniques_in_the_same_order(installed, hook):
    names = list(installed.techniques)
    arguments = {name: None for name in getattr(installed.hook, hook).spec.argnames}

    forward = call_order(reregistered(installed, sorted(names)), hook, **arguments)
    backward = call_order(reregistered(installed, sorted(names, reverse=True)), hook, **arguments)

    assert forward == backward


def test_the_declared_order_of_the_data_and_loss_hooks():
    pm = get_plugin_manager(only=["knowledge", "distillation", "augmentation", "multitask"])
    swapped = reregistered(pm, ["multitask", "knowledge", "distillation", "augmentation"])

    for manager in (pm, swapped):
        # knowledge adds vectors to the rows the files give, distillation's teacher sees them, augmentation copies last.
        assert call_order(manager, "autobert_modify_datasets", datasets=None, run=None) == [
            "knowledge", "distillation", "augmentation"]
        # multitask adds its term around the whole loss, distillation's mix of the cross-entropy included.
        assert call_order(manager, "autobert_compute_loss", model=None, inputs=None, outputs=None, extras=None,
                          run=None) == ["multitask", "distillation", DEFAULTS_NAME]


def test_a_swapped_registration_gives_the_same_loss():
    import torch
    import torch.nn.functional as F

    class Double:
        """A plain loss wrapper, like a third-party technique's: its place in the chain is by registration."""

        @hookimpl(wrapper=True, trylast=True)
        def autobert_compute_loss(self):
            return 2 * (yield)

    class AddOne:
        @hookimpl(wrapper=True)
        def autobert_compute_loss(self):
            return (yield) + 1

    from autobert.run.plugin_manager import Technique

    def loss(order):
        pm = PluginManager()
        pm.register(get_plugin_manager(only=[]).get_plugin(DEFAULTS_NAME), name=DEFAULTS_NAME)
        plugins = {"double": Double(), "add_one": AddOne()}
        for name in order:
            pm.register_technique(plugins[name], Technique(name, "tests", "autobert-tests", "0"))
        outputs = type("Out", (), {"loss": F.cross_entropy(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))})()
        return pm.hook.autobert_compute_loss(model=None, inputs={}, outputs=outputs, extras={}, run=None)

    # trylast: Double is the innermost wrapper whatever the order: 2 * loss + 1, never 2 * (loss + 1).
    assert torch.equal(loss(["double", "add_one"]), loss(["add_one", "double"]))
