"""reprolib.networks.ConvNet (Chapter 5's CPU feature model): shapes, and the same function in both
memory layouts."""
import torch

from reprolib.networks import ConvNet


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
