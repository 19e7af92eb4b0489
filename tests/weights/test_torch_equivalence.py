"""Optional: PyTorch modules written here (not torchvision/timm) against the converted Keras models.

Runs only where PyTorch is installed; the package never needs it. Checks numerical equivalence of a ResNet v1.5
(symmetric padding of strided convolutions, -inf padded max-pool) and a timm-style ViT (fused qkv) after
conversion through safetensors.
"""

import keras
import numpy as np
import pytest

import keras_vitres
import keras_vitres.weights  # noqa: F401  (registers the .safetensors loader for `weights=`)

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402

from tests.helpers import tiny_vit  # noqa: E402


class TorchBottleneck(nn.Module):
    """torchvision's Bottleneck: 1x1, 3x3 (stride here: v1.5), 1x1, with a projection shortcut when needed."""

    def __init__(self, in_channels, filters, stride):
        super().__init__()
        out = filters * 4
        self.conv1, self.bn1 = nn.Conv2d(in_channels, filters, 1, bias=False), nn.BatchNorm2d(filters)
        self.conv2, self.bn2 = nn.Conv2d(filters, filters, 3, stride, 1, bias=False), nn.BatchNorm2d(filters)
        self.conv3, self.bn3 = nn.Conv2d(filters, out, 1, bias=False), nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchBasic(nn.Module):
    def __init__(self, in_channels, filters, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(in_channels, filters, 3, stride, 1, bias=False), nn.BatchNorm2d(filters)
        self.conv2, self.bn2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False), nn.BatchNorm2d(filters)
        self.downsample = None
        if stride != 1 or in_channels != filters:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, filters, 1, stride, bias=False), nn.BatchNorm2d(filters)
            )

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(nn.Module):
    def __init__(self, block, stage_blocks, stage_filters, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stage_filters[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stage_filters[0])
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = stage_filters[0]
        for s, (blocks, filters) in enumerate(zip(stage_blocks, stage_filters), start=1):
            layers = []
            for b in range(blocks):
                layers.append(block(channels, filters, 2 if s > 1 and b == 0 else 1))
                channels = filters * (4 if block is TorchBottleneck else 1)
            setattr(self, f"layer{s}", nn.Sequential(*layers))
        self.num_stages = len(stage_blocks)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for s in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{s}")(x)
        return self.fc(x.mean((2, 3)))


class TorchAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, d))


class TorchMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class TorchBlock(nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), TorchAttention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), TorchMlp(dim, mlp)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TorchPatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class TorchViT(nn.Module):
    """timm's VisionTransformer names: patch_embed.proj, cls_token, pos_embed, blocks.{i}, norm, head."""

    def __init__(self, patch, dim, depth, heads, mlp, classes, grid):
        super().__init__()
        self.patch_embed = TorchPatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, dim) * 0.5)
        self.blocks = nn.ModuleList([TorchBlock(dim, heads, mlp) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def randomise_batch_norm(module):
    generator = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=generator) + 0.5
            m.bias.data = torch.randn(c, generator=generator) * 0.2
            m.running_mean.data = torch.randn(c, generator=generator) * 0.2
            m.running_var.data = torch.rand(c, generator=generator) * 1.5 + 0.5
    return module.eval()


def torch_outputs(module, images):
    with torch.no_grad():
        return module(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()


@pytest.mark.parametrize("kind", ["basic", "bottleneck"])
def test_resnet_v1_5_equivalent_to_pytorch(kind, tmp_path):
    torch.manual_seed(0)
    block = TorchBottleneck if kind == "bottleneck" else TorchBasic
    reference = randomise_batch_norm(TorchResNet(block, (1, 2, 1), (8, 16, 16), classes=7))
    save_file(reference.state_dict(), str(tmp_path / "resnet.safetensors"))
    model = keras_vitres.ResNet(
        stem="imagenet",
        block=kind,
        stage_blocks=(1, 2, 1),
        stage_filters=(8, 16, 16),
        version="v1.5",
        input_shape=(56, 56, 3),
        classes=7,
        classifier_activation=None,
        weights=str(tmp_path / "resnet.safetensors"),
    )
    images = np.random.default_rng(0).uniform(-2, 2, (2, 56, 56, 3)).astype("float32")
    expected = torch_outputs(reference, images)
    actual = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_allclose(actual, expected, atol=1e-4 * np.abs(expected).max(), rtol=1e-4)


def test_vit_equivalent_to_pytorch(tmp_path):
    torch.manual_seed(0)
    reference = TorchViT(patch=8, dim=32, depth=2, heads=4, mlp=64, classes=5, grid=4).eval()
    save_file(reference.state_dict(), str(tmp_path / "vit.safetensors"))
    model = tiny_vit(num_heads=4, approximate_gelu=False, weights=str(tmp_path / "vit.safetensors"))
    images = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(images, training=False)),
        torch_outputs(reference, images),
        atol=1e-4,
        rtol=1e-4,
    )
