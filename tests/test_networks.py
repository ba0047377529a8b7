"""reprolib.networks: ConvNet (Chapter 5's CPU feature model) has the same function in both memory
layouts; Dropout (Chapter 1's) behaves as torch.nn.Dropout."""
import pytest
import torch

from reprolib.networks import ConvNet, Dropout


def test_convnet_shapes_and_layout():
    net = ConvNet(1, [4, 8, 8, 16])
    assert net.dim == 16
    assert net.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    out = net(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 16)
    assert ConvNet(3, [4, 8, 8, 16])(torch.rand(2, 3, 32, 32)).shape == (2, 16)


def test_convnet_layouts_compute_the_same_features():
    images = torch.rand(5, 3, 32, 32)   # 3 channels: with 1, NCHW and NHWC weights coincide
    torch.manual_seed(0)
    nhwc = ConvNet(3, [4, 8, 8, 16], channels_last=True).eval()
    torch.manual_seed(0)
    nchw = ConvNet(3, [4, 8, 8, 16], channels_last=False).eval()
    assert not nchw.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.allclose(nhwc(images), nchw(images), atol=1e-5)
    # gradients too: training steps in the two layouts are the same computation
    for net in (nhwc, nchw):
        net.train()
        net(images).sum().backward()
    assert torch.allclose(nhwc.body[0].weight.grad, nchw.body[0].weight.grad, atol=1e-4)


def test_dropout_drops_a_share_p_and_scales_the_rest():
    torch.manual_seed(0)
    layer = Dropout(0.1)
    x = torch.rand(1_000_000) + 0.5
    y = layer(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 5 * (0.1 * 0.9 / x.numel()) ** 0.5   # 5 binomial standard deviations
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.9)
    # the gradient is the mask times the scale, as for torch.nn.Dropout
    x = torch.rand(4, 8, 5, 5, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() / 0.9)


def test_dropout_seeded_by_torch_identity_in_eval_and_limits():
    x = torch.rand(3, 16, 7, 7) + 0.5
    torch.manual_seed(3)
    first = Dropout(0.3)(x)
    torch.manual_seed(3)
    assert torch.equal(Dropout(0.3)(x), first)          # torch.manual_seed governs the masks
    assert not torch.equal(Dropout(0.3)(x), first)      # and successive calls differ
    assert torch.equal(Dropout(0.3).eval()(x), x)
    assert torch.equal(Dropout(0.0)(x), x)
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
    channels_last = x.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(3)
    assert torch.equal(Dropout(0.3)(channels_last), first)   # the mask follows the logical index
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="dropout probability"):
            Dropout(p)
