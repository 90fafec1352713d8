"""The feature encoder's first block, rewritten for export: conv + per-channel GroupNorm + GELU
as one batched matmul whose weights carry the normalisation.

Why: in wav2vec2-family models with ``feat_extract_norm="group"`` (wav2vec2-base, HuBERT-base,
DistilHuBERT) the first conv (one input channel, kernel 10, stride 5) writes the largest tensor
in the network (512 channels x 3,200 frames per second), and its GroupNorm(512, 512) then reads
and writes it four more times: onnxruntime's InstanceNormalization (on one thread) and the
affine Mul and Add. The block is float in every recipe, so it costs fp32 and int8 the same
milliseconds, and bounds what quantising the rest can gain.

The rewrite is exact algebra, not an approximation. The conv is linear in its 10-sample
patches p_t, so each channel's mean and variance over time follow from the patches' mean m and
10 x 10 covariance S: mean_c = w_c . m, var_c = w_c' S w_c. Scaling w_c by gamma_c / sqrt(var_c
+ eps) and adding beta_c - scale_c * mean_c as an 11th weight (against a row of ones) gives the
normalised, affine output in one (batch, 512, 11) x (batch, 11, frames) matmul: one write of the
big tensor instead of five passes. The statistics cost a pass over the 10-sample patches (1/50th
of the conv output). Weights differ per clip, so a batched MatMul (not a Conv) carries them, and
batches of any size work. A conv bias, if any, cancels in the normalisation and is ignored.
"""
from __future__ import annotations

import contextlib

# where the exporter puts the folded block's nodes (torch.onnx names nodes by module path)
SCOPE = "/feature_extractor/conv_layers.0/"


def float_nodes(graph) -> list[str]:
    """The folded block's MatMuls in an exported graph: the clip's patch covariance and the
    normalised conv. They hold no weights, and quantising them would quantise the statistics the
    normalisation is computed from, so every quantising method keeps them float."""
    return [n.name for n in graph.node if n.op_type == "MatMul" and SCOPE in n.name]


def _foldable(layer) -> bool:
    conv, norm = getattr(layer, "conv", None), getattr(layer, "layer_norm", None)
    import torch

    return (isinstance(conv, torch.nn.Conv1d) and isinstance(norm, torch.nn.GroupNorm) and conv.in_channels == 1
            and conv.groups == 1 and conv.padding == (0,) and conv.dilation == (1,)
            and norm.num_groups == norm.num_channels == conv.out_channels and norm.affine
            and conv.kernel_size[0] % conv.stride[0] == 0)


def _module(layer):
    import torch

    class FoldedFirstConv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            conv, norm = layer.conv, layer.layer_norm
            self.k, self.s = conv.kernel_size[0], conv.stride[0]
            self.weight, self.gamma, self.beta, self.eps = conv.weight, norm.weight, norm.bias, norm.eps
            self.activation = layer.activation

        def forward(self, x):  # (batch, 1, samples) -> (batch, channels, frames)
            batch, x = x.shape[0], x[:, 0]
            n, r = x.shape[-1] // self.s, self.k // self.s
            hops = x[:, : n * self.s].reshape(batch, n, self.s)
            # the conv's patches (batch, frames, k): k = r hops of s samples, frames = n - r + 1
            patches = torch.cat([hops[:, j: n - r + 1 + j] for j in range(r)], dim=-1)
            mean = patches.mean(dim=1, keepdim=True)
            # scaled before the product so that sums stay O(variance) for long clips
            centred = (patches - mean) / torch.sqrt(torch.ones_like(mean[:, :, :1]) * patches.shape[1])
            cov = centred.transpose(1, 2) @ centred                              # (batch, k, k)
            w = self.weight[:, 0, :]                                              # (channels, k)
            # w' S w and w . m as Mul + ReduceSum, not MatMul: a quantiser's MatMul with a weight
            # input would quantise the statistics themselves
            var = ((cov[:, None] * w[None, :, :, None]).sum(-2) * w).sum(-1)      # (batch, channels)
            scale = self.gamma / torch.sqrt(var + self.eps)
            shift = self.beta - scale * (mean * w).sum(-1)
            folded = torch.cat([w * scale[..., None], shift[..., None]], dim=-1)  # (batch, channels, k+1)
            rows = torch.cat([patches, torch.ones_like(patches[..., :1])], dim=-1).transpose(1, 2)
            return self.activation(folded @ rows)

    return FoldedFirstConv()


@contextlib.contextmanager
def folded(model):
    """Inside the block, ``model``'s first feature-encoder layer is the folded form when it has
    the conv + GroupNorm(C, C) shape; any other model is left as it is. Restored on exit (the
    torch model is shared with the torch encoder and fine-tuning)."""
    layers = getattr(getattr(model, "feature_extractor", None), "conv_layers", None)
    if layers is None or not len(layers) or not _foldable(layers[0]):
        yield False
        return
    original = layers[0]
    layers[0] = _module(original)
    try:
        yield True
    finally:
        layers[0] = original
