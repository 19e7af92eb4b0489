"""NumPy reference computations, written from the papers' equations, to check the layers against."""

import numpy as np


def conv2d(x, kernel, bias=None, stride=1, padding=0):
    """Cross-correlation as in PyTorch: symmetric zero padding of `padding` pixels, then a strided valid conv.

    x: (N, H, W, Cin); kernel: (kh, kw, Cin, Cout).
    """
    x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    kh, kw, _, cout = kernel.shape
    n, h, w, _ = x.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, oh, ow, cout), np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i : i + stride * oh : stride, j : j + stride * ow : stride, :]
            out += np.einsum("nhwc,cd->nhwd", patch, kernel[i, j])
    return out if bias is None else out + bias


def batch_norm(x, gamma, beta, mean, var, eps):
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def layer_norm(x, scale, bias, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def gelu(x, approximate=False):
    if approximate:
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    from scipy.special import erf

    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def multi_head_attention(x, wq, bq, wk, bk, wv, bv, wo, bo):
    """MSA of eq. 5-8 in the ViT paper's appendix. Kernels (D, heads, head_dim), output kernel (heads, head_dim, D)."""
    q = np.einsum("ntd,dhk->nhtk", x, wq) + bq[None, :, None, :]
    k = np.einsum("ntd,dhk->nhtk", x, wk) + bk[None, :, None, :]
    v = np.einsum("ntd,dhk->nhtk", x, wv) + bv[None, :, None, :]
    weights = softmax(np.einsum("nhqk,nhsk->nhqs", q, k) / np.sqrt(q.shape[-1]))
    heads = np.einsum("nhqs,nhsk->nhqk", weights, v)
    return np.einsum("nhqk,hkd->nqd", heads, wo) + bo, weights
