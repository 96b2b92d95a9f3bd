"""Every chapter's recipe card (book/<part>/<chapter>.paper.yaml) agrees with the paper recipe it names
(issue 34 item 2), and the card machinery reads a recipe's values as the loop would use them."""
import pytest

from tdlab.book import paper_cards
from tdlab.core import recipes


@pytest.mark.parametrize("chapter", paper_cards.chapters())
def test_the_paper_recipe_holds_every_value_of_its_card(chapter):
    card = paper_cards.load(chapter)
    assert card["chapter"] == chapter
    assert paper_cards.disagreements(card) == []


def test_a_card_catches_a_recipe_that_departs_from_it():
    card = {"chapter": "x/y", "paper": "p", "recipe": "m:f", "train_size": 1000,
            "settings": {"lr": {"value": 0.1, "source": "Table 1"}, "epochs": {"value": 10, "source": "§4"},
                         "lr_multiplier_at_epoch": {"value": {0: 1.0, 5: 0.1}, "source": "§4"}}}
    good = recipes.Recipe(None, lambda: None, dict(lr=0.1, batch_size=100, steps=100, schedule_name="step"))
    # by hand: 10 epochs of 1000 // 100 = 10 steps; "step" × 0.1 at 50 % and 75 % of 100 steps: epoch 5 is step 50
    assert paper_cards.ours(good, card, "epochs") == 10
    assert paper_cards.ours(good, card, "lr_multiplier_at_epoch") == {0: 1.0, 5: 0.1}
    assert paper_cards.disagreements(card, good) == []
    bad = good.but(lr=0.2, steps=200)
    found = paper_cards.disagreements(card, bad)
    assert len(found) == 3 and any("lr is 0.2" in f for f in found) and any("epochs is 20" in f for f in found)


def test_a_card_without_a_source_is_refused(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "c.paper.yaml").write_text("chapter: p/c\npaper: x\nrecipe: m:f\nsettings:\n  lr: {value: 0.1}\n")
    with pytest.raises(ValueError, match="source"):
        paper_cards.load("p/c", book=tmp_path)


def test_the_readers_of_augmentation_last_lr_decay_mode_and_loss_hyperparameters():
    from tdlab.core import augment, losses

    class Replay(losses.Loss):
        hyperparameters = ("new_weight", "z_loss", "student_temperature", "teacher_temperature")

        def __init__(self):
            self.new_weight, self.z_loss, self.student_temperature, self.teacher_temperature = 0.3, 1e-4, 1.0, 0.5

    card = {"chapter": "x/y", "train_size": 1000, "settings": {}}
    plain = recipes.Recipe(None, lambda: None, dict(lr=0.1, batch_size=100, steps=100))
    hooked = plain.but(batch_hook=augment.crop_flip(padding=4), loss=Replay(), tags={"decay": "independent"},
                       schedule_name="cosine")
    assert paper_cards.ours(plain, card, "augmentation") == "none"
    assert paper_cards.ours(hooked, card, "augmentation") == {"crop_padding": 4, "crop_flip": True}
    assert paper_cards.ours(plain, card, "final_lr") == 0.1            # constant: the peak at the last step
    assert paper_cards.ours(hooked, card, "final_lr") == 0.0           # cosine: 0.5·(1 + cos π) = 0
    assert paper_cards.ours(plain.but(schedule_name="step"), card, "final_lr") == 0.001   # × 0.1 twice
    assert paper_cards.ours(plain, card, "decay") is None and paper_cards.ours(hooked, card, "decay") == "independent"
    assert [paper_cards.ours(hooked, card, k) for k in Replay.hyperparameters] == [0.3, 1e-4, 1.0, 0.5]
    assert paper_cards.ours(plain, card, "new_weight") is None          # the loss is a name: no such value


def test_the_model_reader_names_a_resnet_by_its_depth():
    from tdlab.core import models
    card = {"chapter": "x/y", "settings": {}}
    assert paper_cards.ours(recipes.Recipe(None, models.ResNet34, {}), card, "model") == "ResNet34"   # by name
    assert paper_cards.ours(recipes.Recipe(None, lambda: models.ResNet34(100), {}), card, "model") == "ResNet34"
    assert paper_cards.ours(recipes.Recipe(None, lambda: models.ResNet((2, 2, 2, 2)), {}), card, "model") == "ResNet18"
    assert paper_cards.ours(recipes.Recipe(None, lambda: models.MLP(4, 2), {}), card, "model") == "MLP"


def test_a_schedule_difference_is_read_at_the_epochs_the_card_gives_for_ours():
    card = {"chapter": "x/y", "train_size": 1000, "settings": {},
            "differences": {"lr_multiplier_at_epoch": {"paper": {0: 1.0, 5: 0.5}, "ours": {0: 1.0, 5: 0.1}, "why": "w"}}}
    recipe = recipes.Recipe(None, lambda: None, dict(lr=0.1, batch_size=100, steps=100, schedule_name="step"))
    assert paper_cards.ours(recipe, card, "lr_multiplier_at_epoch") == {0: 1.0, 5: 0.1}
    assert paper_cards.disagreements(card, recipe) == []


def test_the_cost_of_a_paper_run_counted_on_the_meta_device_matches_a_real_pass_and_the_formula_by_hand():
    import torch
    from tdlab.core import models, smoke
    card = {"chapter": "x/y", "train_size": 1000,
            "cost": {"input": [12], "test_size": 200, "runs": 3, "eval_every": 50}}
    recipe = recipes.Recipe(None, lambda: models.MLP(12, 5, width=16, depth=1),
                            dict(lr=0.1, batch_size=100, steps=500, eval_every=10))
    c = paper_cards.cost(card, recipe)
    real = smoke.example_flops(recipe.model(), torch.randn(4, 12))       # real tensors, real arithmetic
    assert c["flops_per_example"] == real > 0
    # by hand: 500 steps × 100 examples, plus 500 // 50 + 1 = 11 evaluations of (1000 + 200) examples forward
    # (a third of forward and backward), for 3 runs; hours at 30 % of 494.7 TFLOP/s
    flops = 3 * real * (500 * 100 + 11 * 1200 / 3)
    assert c["flops"] == pytest.approx(flops)
    assert c["hours"] == pytest.approx(flops / (494.7e12 * 0.3) / 3600)


@pytest.mark.parametrize("chapter", paper_cards.chapters())
def test_every_card_projects_its_paper_runs_cost(chapter):
    c = paper_cards.cost(paper_cards.load(chapter))
    assert c["flops_per_example"] > 0 and c["runs"] >= 1 and 0 < c["hours"] < 1000


def test_a_recipe_whose_optimizer_is_a_knob_is_read_at_the_knobs_defaults():
    """The optimizer and lr of a recipe that sets them in a derivation (the softmax-collapse chapter's ``optimizer``
    knob) are that derivation's defaults; a setting wins over a knob; neither gives None."""
    def choose(optimizer="AdamW", lr=0.01):
        return {"optimizer": "adamw"}

    card = {"chapter": "x/y", "settings": {}}
    knobbed = recipes.Recipe(None, lambda: None, dict(steps=10), derive=(choose,))
    assert paper_cards.ours(knobbed, card, "optimizer") == "AdamW" and paper_cards.ours(knobbed, card, "lr") == 0.01
    assert paper_cards.ours(knobbed.but(lr=0.5), card, "lr") == 0.5
    plain = recipes.Recipe(None, lambda: None, dict(steps=10))
    assert paper_cards.ours(plain, card, "optimizer") is None and paper_cards.ours(plain, card, "lr") is None


def test_a_tiny_float_is_shown_as_text_not_as_a_rounded_zero():
    card = {"chapter": "x/y", "settings": {"eps": {"value": 1e-25, "source": "s"}, "lr": {"value": 0.1, "source": "s"}}}
    recipe = recipes.Recipe(None, lambda: None, dict(eps=1e-25, lr=0.1))
    t = paper_cards.table(card, recipe)
    assert t.loc["eps", "paper"] == "1e-25" and t.loc["eps", "ours (TDLAB_SCALE=paper)"] == "1e-25"
    assert t.loc["lr", "paper"] == 0.1           # ordinary values stay numbers


def test_a_hook_made_by_a_per_member_derivation_is_read_at_its_default_knobs():
    """The mixup and CutMix chapters make their batch hook in a per_member derivation (the method is a knob): the
    augmentation reader builds it at the derivation's defaults; a hook in the settings still wins."""
    from tdlab.core import augment

    @recipes.per_member
    def mixing(mixup_alpha=32.0):
        return {"batch_hook": augment.compose(augment.crop_flip(padding=4), augment.mixup(mixup_alpha, 10))}

    card = {"chapter": "x/y", "settings": {}}
    derived = recipes.Recipe(None, lambda: None, dict(steps=10), derive=(mixing,))
    assert paper_cards.ours(derived, card, "augmentation") == {
        "crop_padding": 4, "crop_flip": True, "mixup_alpha": 32.0, "mixup_stop_after": None,
        "mixup_label_map": "label_identity"}
    plain = recipes.Recipe(None, lambda: None, dict(steps=10), derive=(lambda lr=0.1: {"lr": lr},))
    assert paper_cards.ours(plain, card, "augmentation") == "none"      # a derivation not marked per_member
