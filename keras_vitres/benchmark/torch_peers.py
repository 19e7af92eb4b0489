"""PyTorch peers (torchvision, timm) for the GPU benchmark; loaded by the worker by path and never imports Keras.

The settings are what a PyTorch user would pick for speed: channels-last memory format, bfloat16 autocast for
`mixed_bfloat16`, `torch.compile` when the benchmark's `jit` resolves on (auto: on for a GPU), SGD with
momentum and cross-entropy on logits, as the Keras candidates. PyTorch, torchvision and timm are optional: each
is imported where a peer needs it.
"""

import time


def build_model(builder, image_shape, classes, options):
    if builder == "torchvision_model":
        import torchvision

        return getattr(torchvision.models, options["name"])(weights=None, num_classes=classes)
    if builder == "timm_model":
        import timm

        name = options["name"]
        kwargs = dict(img_size=tuple(image_shape[:2])) if name.startswith("vit") else {}
        return timm.create_model(name, pretrained=False, num_classes=classes, **kwargs)
    raise ValueError(f"Unknown PyTorch builder: received builder={builder!r}; valid: torchvision_model, timm_model.")


class TorchSession:
    """A PyTorch candidate on the GPU when there is one (else the CPU), timed like the Keras ones."""

    backend = "torch"

    def __init__(self, request):
        import torch

        self.torch = torch
        self.device = "gpu" if torch.cuda.is_available() else "cpu"
        device = torch.device("cuda" if self.device == "gpu" else "cpu")
        start = time.perf_counter()
        model = build_model(request["builder"], request["image_shape"], request["classes"], request["options"])
        self.build_s = time.perf_counter() - start
        self.params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
        self.model = model.to(device, memory_format=torch.channels_last)
        jit = request["jit"]
        self.jit = self.device == "gpu" if jit == "auto" else jit == "on"
        self.step_model = torch.compile(self.model) if self.jit else self.model
        self.bf16 = request["precision"] == "mixed_bfloat16"
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.loss = torch.nn.CrossEntropyLoss()
        h, w, c = request["image_shape"]
        generator = torch.Generator().manual_seed(0)
        x = torch.rand((request["batch_size"], c, h, w), generator=generator)
        self.x = x.to(device).contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, request["classes"], (request["batch_size"],), generator=generator).to(device)

    def _autocast(self):
        return self.torch.autocast(device_type="cuda" if self.device == "gpu" else "cpu", dtype=self.torch.bfloat16,
                                   enabled=self.bf16)

    def _sync(self):
        if self.device == "gpu":
            self.torch.cuda.synchronize()

    def train(self):
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = self.loss(self.step_model(self.x), self.y)
        loss.backward()
        self.optimizer.step()
        self._sync()

    def infer(self):
        self.model.eval()
        with self.torch.inference_mode(), self._autocast():
            self.step_model(self.x)
        self._sync()

    def device_peak_mib(self):
        return self.torch.cuda.max_memory_allocated() / 2**20 if self.device == "gpu" else None
