"""The paper recipes that live beside their methods (issue 33 item 2): each constructs without data (nothing is
downloaded until a run trains) and holds the paper's settings."""
from tdlab.methods.representations import neural_collapse as nc


def test_neural_collapse_paper_recipe():
    recipe = nc.paper_recipe(seed=2, minority=[5, 6, 7, 8, 9])
    epoch = 50_000 // 128
    s = recipe.settings
    assert recipe.steps == 200 * epoch and s["batch_size"] == 128 and s["lr"] == 0.05 and s["momentum"] == 0.9
    schedule = s["schedule_name"]
    assert schedule(0) == 1.0 and abs(schedule(40 * epoch) - 0.2) < 1e-12 and abs(schedule(80 * epoch) - 0.04) < 1e-12
    assert recipe.knob_default("imbalance") == 1.0
    assert nc.PAPER_DECAY in nc.PAPER_DECAYS and 0.0 in nc.PAPER_DECAYS


def test_multisample_dropout_paper_recipe():
    from tdlab.methods.regularization import multisample
    recipe = multisample.paper_recipe(seed=1, dropout=0.5)
    s = recipe.settings
    assert recipe.steps == 200 * (50_000 // 128) and s["schedule_name"] == "cosine" and s["weight_decay"] == 5e-4
    assert s["optimizer"] == "sgd" and s["lr"] == 0.1 and s["batch_size"] == 128


def test_zloss_paper_scale_recipe():
    from tdlab.methods.noisy_labels import zloss
    recipe = zloss.paper_recipe(seed=0)
    s = recipe.settings
    assert recipe.steps == 200 * (50_000 // 128) and s["schedule_name"] == "cosine" and s["momentum"] == 0.9


def test_pskd_paper_recipe_is_the_official_run():
    from tdlab.methods.noisy_labels import pskd
    s = pskd.paper_recipe(seed=0).settings
    assert s["nesterov"] and s["steps"] == 300 * (50_000 // 128) and s["schedule_name"] == "step"


def test_small_scale_proxies_paper_recipe():
    from tdlab.methods.stability import stability
    recipe = stability.paper_recipe()
    assert recipe.steps == 100_000 and recipe.settings["batch_size"] == 256 and recipe.settings["warmup"] == 5_000
    assert recipe.settings["tags"]["decay"] == "independent" and recipe.settings["weight_decay"] == 1e-4
    assert stability.paper_recipe("coupled").settings["tags"]["decay"] == "coupled"


def test_compander_paper_setup_is_a_function_not_a_download():
    from tdlab.methods.regularization import compander
    assert callable(compander.paper_setup)             # it loads CIFAR-10 when called: not here


def test_random_teachers_and_stability_gap_paper_recipes_construct():
    from tdlab.methods.continual import continual
    recipe = continual.paper_recipe(replay_seed=2)
    assert recipe.settings["batch_size"] == 256 and recipe.settings["lr"] == 0.01
    from tdlab.methods.representations import random_teachers as rt
    assert callable(rt.paper_recipe)                    # it loads CIFAR-10 when called: not here


def test_elr_paper_recipe_is_app_g3():
    from tdlab.methods.noisy_labels import early_learning
    recipe = early_learning.paper_recipe(seed=0)
    s = recipe.settings
    assert recipe.steps == 120 * (50_000 // 128) and s["lr"] == 0.02 and s["weight_decay"] == 1e-3
    assert s["noise"] == "uniform"
    schedule = s["schedule_name"]
    assert schedule(0) == 1.0 and abs(schedule(recipe.steps - 1) - 1e-4) < 1e-12      # ÷100 twice
