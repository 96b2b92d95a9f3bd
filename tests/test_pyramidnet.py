import torch

from tdlab.methods.noisy_labels import pyramidnet


def test_pyramidnet200_has_the_papers_size():
    model = pyramidnet.pyramidnet200(num_classes=100)
    n = sum(p.numel() for p in model.parameters())
    assert 26.0e6 < n < 27.6e6        # the PyramidNet paper's 26.0M (CIFAR-10) / CutMix's 26.8M (CIFAR-100)


def test_small_pyramidnet_runs_and_widens():
    model = pyramidnet.PyramidNet(depth=11, alpha=48, num_classes=7)      # one block per stage
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    widths = [b.body[1].out_channels for b in model.blocks]
    assert widths == [32, 48, 64]
    assert [b.stride for b in model.blocks] == [1, 2, 2]
