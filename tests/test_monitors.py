"""monitors.accuracy_on_altered: the accuracy of every member on a subset with its inputs changed."""
import pytest
import torch

from tdlab.core import data, models, monitors


def _evaluation(members, features):
    """An Evaluation of ``members`` MLPs on ``features`` (only what accuracy_on_altered reads)."""
    stacked = {name: torch.stack([dict(m.named_parameters())[name].detach() for m in members])
               for name, _ in members[0].named_parameters()}
    targets = {"train": features.y_train.expand(len(members), -1), "test": features.y_test.expand(len(members), -1)}
    placeholder = {split: torch.zeros(len(members), len(y), 2) for split, y in
                   (("train", features.y_train), ("test", features.y_test))}
    return monitors.Evaluation(0, placeholder, targets, None, None, features, None, [{}] * len(members),
                               lambda m: {name: p[m] for name, p in stacked.items()})


def _zero_confuser(x):
    x[:, 1] = 0
    return x


def test_altered_accuracy_matches_each_member_run_on_the_changed_inputs():
    torch.manual_seed(0)
    features = data.feature_noise(num_train=20, num_test=300, patches=4, dim=16, rare_fraction=0.3, seed=1)
    rare = features.info["rare_test"]
    members = [models.MLP(4 * 16, 2, width=8, depth=1) for _ in range(3)]
    measured = monitors.accuracy_on_altered("rare_blind", rare, _zero_confuser, members[0])(
        _evaluation(members, features))[("test_rare_blind", "acc")]
    x = features.x_test[rare].clone()
    x[:, 1] = 0
    for m, model in enumerate(members):
        with torch.no_grad():
            expected = (model(x).argmax(-1) == features.y_test[rare]).float().mean()
        assert measured[m].item() == pytest.approx(expected.item())
    assert features.x_test[rare][:, 1].abs().sum() > 0          # the data itself is untouched


def test_the_confuser_patch_alone_names_the_class_with_two_classes():
    """Why the chapter needs the monitor: a model that reads only patch 2 scores 100% on the rare examples, and
    no better than always guessing class 0 once that patch is zeroed."""
    features = data.feature_noise(num_train=20, num_test=400, patches=4, dim=16, rare_fraction=0.5, seed=2)
    common = features.info["features"][:2]                          # u_1, u_2
    model = models.MLP(4 * 16, 2, width=2, depth=0)
    with torch.no_grad():
        model.net[1].weight.zero_()
        model.net[1].bias.zero_()
        model.net[1].weight[:, 16:32] = -common                     # predict y: the class whose u is not in patch 2
    rare = features.info["rare_test"]
    ev = _evaluation([model], features)
    seen = monitors.accuracy_on("rare", rare)(monitors.Evaluation(
        0, {"test": model(features.x_test).detach()[None]}, ev.targets, None, None, features, None, [{}],
        ev.parameters))[("test_rare", "acc")]
    blind = monitors.accuracy_on_altered("rare_blind", rare, _zero_confuser, model)(ev)[("test_rare_blind", "acc")]
    assert seen[0] == pytest.approx(1.0)
    assert blind[0].item() == pytest.approx((features.y_test[rare] == 0).float().mean().item())   # logits all 0


def test_a_mask_of_the_wrong_length_is_refused():
    features = data.feature_noise(num_train=20, num_test=50, patches=4, dim=16, seed=3)
    model = models.MLP(4 * 16, 2, width=4, depth=1)
    monitor = monitors.accuracy_on_altered("x", torch.ones(49, dtype=torch.bool), _zero_confuser, model)
    with pytest.raises(ValueError, match="49 entries"):
        monitor(_evaluation([model], features))
    with pytest.raises(ValueError, match="1-D boolean"):
        monitors.accuracy_on_altered("x", torch.ones(50), _zero_confuser, model)
