"""The GraNet chapter's recipes (tdlab.methods.sparse_training.granet): the paper's run as its official code
configures it, and the schedule's step counts read through Recipe.knob_default (not a function's __defaults__)."""
import pytest

from tdlab.core import recipes
from tdlab.methods.sparse_training import granet
from tdlab.methods.sparse_training.sparsity import Pruner


def test_the_paper_recipe_is_the_official_cifar10_run():
    recipe = granet.paper_recipe(seed=3)
    assert recipe.steps == 160 * granet.EPOCH == 62_400
    s = recipe.settings
    assert (s["optimizer"], s["lr"], s["momentum"], s["nesterov"], s["weight_decay"], s["batch_size"],
            s["schedule_name"]) == ("sgd", 0.1, 0.9, True, 5e-4, 128, "step")
    assert recipe.knob_default("update_every") == 1000 and recipe.knob_default("prune_end") == 80 * granet.EPOCH
    assert recipe.knob_default("regrowth") == 0.5 and recipe.knob_default("optimizer") == "sgd"


def test_the_derivation_makes_a_pruner_with_the_knobs_given():
    derive = granet.pruning(update_every=50, prune_end=750)
    made = derive(method="gmp", final_sparsity=0.9)
    hook = made["step_hook"]
    assert isinstance(hook, Pruner) and made["monitors"] == [hook.monitor]
    recipe = recipes.Recipe(lambda: None, lambda: None, {"steps": 1500}, derive=(derive,))
    assert recipe.knob_default("update_every") == 50 and recipe.knob_default("prune_end") == 750
    with pytest.raises(ValueError, match="no knob"):
        recipe.knob_default("alpha")
