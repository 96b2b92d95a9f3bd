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
    recipe = compander.paper_recipe_settings(seed=0)  # what paper_setup is made from: it loads nothing
    epoch = 50_000 // 128
    s = recipe.settings
    assert callable(recipe.data) and not recipe._loaded
    assert (s["a"], s["b"], s["lr"], s["weight_decay"], recipe.steps) == (1.0, 0.6, 0.1, 1e-4, 200 * epoch)
    assert s["schedule_name"](90 * epoch - 1) == 1.0 and abs(s["schedule_name"](136 * epoch) - 0.01) < 1e-12


def test_random_teachers_and_stability_gap_paper_recipes_construct():
    from tdlab.methods.continual import continual
    recipe = continual.paper_recipe(replay_seed=2)
    assert recipe.settings["batch_size"] == 256 and recipe.settings["lr"] == 0.01
    from tdlab.methods.representations import random_teachers as rt
    recipe = rt.paper_recipe(teacher_seed=1000)         # builds without loading CIFAR-10 or running the teacher
    assert callable(recipe.data) and not recipe._loaded and callable(recipe.settings["loss"]._teacher_logits)
    assert recipe.settings["batch_size"] == 256 and recipe.steps == 100 * (50_000 // 256)


def test_a_random_teacher_recipe_on_a_data_function_trains_as_on_the_data_itself():
    """The lazy path (data given as a function: nothing loaded, no teacher run, until the recipe needs its data)
    trains exactly as the eager one (the data given)."""
    import torch
    from tdlab.core.data import Dataset
    from tdlab.methods.representations import random_teachers as rt
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=g), torch.randint(0, 2, (64,), generator=g)
    data = Dataset("toy", x[:48], y[:48], x[48:], y[48:], 2)
    build = rt.mlp_net(6, width=8, depth=1, out_dim=5, hidden=(7,), bottleneck=3)
    loads = []
    settings = dict(teacher_seed=1, knn_k=3, optimizer="adamw", lr=1e-2, batch_size=16, steps=12, eval_every=6,
                    progress=False)
    lazy = rt.recipe(lambda: loads.append(1) or data, build, **settings)
    assert loads == [] and lazy.settings["loss"]._teacher_logits is not None and not lazy._loaded
    eager = rt.recipe(data, build, **settings)
    assert torch.equal(lazy.settings["loss"].teacher_logits, eager.settings["loss"].teacher_logits) and loads == [1]
    a, b = (r.sweep([{"seed": 0}], init_distance=1.0) for r in (lazy, eager))
    assert loads == [1]                                  # loaded once, for the logits and the run together
    assert a.curve("train", "distill", 0)[1].tolist() == b.curve("train", "distill", 0)[1].tolist()


def test_elr_paper_recipe_is_app_g3():
    from tdlab.methods.noisy_labels import early_learning
    recipe = early_learning.paper_recipe(seed=0)
    s = recipe.settings
    assert recipe.steps == 120 * (50_000 // 128) and s["lr"] == 0.02 and s["weight_decay"] == 1e-3
    assert s["noise"] == "uniform"
    schedule = s["schedule_name"]
    assert schedule(0) == 1.0 and abs(schedule(recipe.steps - 1) - 1e-4) < 1e-12      # ÷100 twice


def test_ldr_kl_paper_recipe_is_the_official_tabular_protocol_on_letter():
    from tdlab.methods.noisy_labels import ldr_kl
    recipe = ldr_kl.paper_recipe()
    s = recipe.settings
    # by hand: 100 epochs of UCI Letter's 16 000 training rows at batch 64; the MLP 16 → 16 → 16 → 26 with biases
    assert recipe.steps == 100 * 16_000 // 64 and s["batch_size"] == 64 and s["momentum"] == 0.9
    assert (s["lr"], s["weight_decay"], s["schedule_name"]) == (1e-3, 5e-3, "step")
    assert sum(p.numel() for p in recipe.model().parameters()) == (16 * 16 + 16) * 2 + 16 * 26 + 26


def test_compressing_features_paper_recipe_schedule_by_epoch():
    from tdlab.methods.noisy_labels import nested
    recipe = nested.paper_recipe(seed=0, train=lambda: None)       # nothing loaded
    epoch = 45_000 // 320
    rule = recipe.settings["schedule_name"]
    assert recipe.steps == 450 * epoch and recipe.settings["loss"].forget_rate == 0.2
    # warm-up (step + 1)/6000, × 0.1 at epochs 200 and 300, stage 2 at 10⁻³ / 0.1 = 0.01, × 0.1 at its epoch 50
    assert abs(rule(0) - 1 / 6000) < 1e-15 and rule(199 * epoch) == 1.0 and abs(rule(200 * epoch) - 0.1) < 1e-12
    assert abs(rule(350 * epoch) - 0.01) < 1e-12 and abs(rule(400 * epoch) - 0.001) < 1e-12
    assert recipe.model().sigma == 10.0 and recipe.model(sigma=0.0).sigma == 0.0


def test_grokking_paper_recipes_construct_at_the_papers_sizes():
    from tdlab.methods.grokking import grokking, lazy_to_rich, local_complexity as lc, numerics
    corrupted = grokking.paper_recipe(0)
    assert corrupted.dataset.num_train == round(0.5 * 97 ** 2) and corrupted.settings["noise_rate"] == 0.35
    assert sum(p.numel() for p in corrupted.model().parameters()) == 3 * 97 * 500
    collapse = numerics.paper_recipe(0)
    assert collapse.dataset.num_train == round(0.4 * 113 ** 2) and collapse.steps == 80_000
    assert collapse.knob_default("beta2") == 0.99 and collapse.settings["eps"] == 1e-25
    lazy = lazy_to_rich.paper_recipe(0)
    assert lazy.dataset.x_train.shape == (10_000, 100) and lazy.dataset.num_test == 1000 and lazy.steps == 100_000
    local = lc.paper_recipe(0)                     # MNIST is not loaded until a run needs it
    assert local.steps == 10 ** 6 and local.knob_default("init_scale") == 8.0 and local.knob_default("radius") == 1.0
    assert sum(p.numel() for p in local.model().parameters()) == 784 * 200 + 200 + 2 * (200 * 200 + 200) + 2010


def test_the_softmax_collapse_optimizer_knob():
    from tdlab.methods.grokking import numerics
    choose = numerics.official_optimizers(0.01, 0.99)
    assert choose() == {"optimizer": "adamw", "betas": (0.9, 0.99)}
    assert choose(beta2=0.999) == {"optimizer": "adamw", "betas": (0.9, 0.999)}
    assert choose(optimizer="AdamW (defaults)") == {"optimizer": "adamw", "betas": (0.9, 0.999), "eps": 1e-8}


def test_mixup_paper_recipe_and_its_hook():
    """The official train.py run (391 batches of 128 an epoch, 200 epochs, ÷10 at 50% and 75%), and the chapter's
    per-member hook: crop and flip then mixup at paper scale, mixup alone on the CPU, each the hook built by hand."""
    import torch
    from tdlab.core import augment
    from tdlab.core.engine import Batch
    from tdlab.methods.noisy_labels import mixup
    recipe = mixup.paper_recipe(seed=3)
    s = recipe.settings
    assert recipe.steps == 200 * 391 and s["eval_every"] == 391 and s["schedule_name"] == "step"
    assert (s["lr"], s["momentum"], s["weight_decay"], s["batch_size"], s["loss"]) == (0.1, 0.9, 1e-4, 128, "soft_ce")
    assert recipe.knob_default("mixup_alpha") == 32.0 and recipe.knob_default("mixup_stop_after") == 200 * 391
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 10, (1, 6), generator=g)
    for crop in (False, True):
        made = mixup.mixing(8.0, 100, 3, crop=crop)(mixup_alpha=8.0, mixup_stop_after=100, mixup_gamma=1.0)["batch_hook"]
        by_hand = augment.compose(augment.crop_flip(padding=4, seed=3) if crop else None,
                                  augment.mixup(8.0, 10, stop_after=100, seed=3))
        for step in (1, 2):
            a, b = made(Batch(x, y, torch.arange(6), step)), by_hand(Batch(x, y, torch.arange(6), step))
            assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_cutmix_paper_recipe_is_the_readme_run():
    from tdlab.methods.noisy_labels import cutmix, pyramidnet
    recipe = cutmix.paper_recipe(seed=0)
    s = recipe.settings
    assert recipe.model is pyramidnet.pyramidnet200 and recipe.steps == 300 * (50_000 // 64)
    assert (s["lr"], s["batch_size"], s["nesterov"], s["weight_decay"], s["loss"]) == (0.25, 64, True, 1e-4, "soft_ce")
    assert recipe.knob_default("cutmix_prob") == 0.5 and recipe.knob_default("cutmix_beta") == 1.0
    assert recipe.knob_default("method") == "CutMix" and recipe.knob_default("mixup_alpha") == 8.0


def test_sgd_noise_paper_recipe_is_the_readme_lazy_sweep():
    from tdlab.methods.lr_and_batch import sgd_noise
    recipe = sgd_noise.paper_recipe(seed=1)
    s = recipe.settings
    assert recipe.steps == 200_000 and s["eval_every"] == 20_000 and s["batch_size"] == 16 and s["data_seed"] == 1
    assert s["optimizer"] == "sgd" and s["momentum"] == 0.0 and s["weight_decay"] == 0.0
    model = recipe.model()
    assert (model.width, len(model.hidden), model.activation) == (128, 5, "relu")
    assert sum(p.numel() for p in model.parameters()) == 784 * 128 + 4 * 128 * 128 + 128
