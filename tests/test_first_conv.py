"""The folded first block (serbench.artefacts.first_conv) is the same function as the model's own."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from serbench.artefacts import first_conv  # noqa: E402


def _layer(model):
    return model.feature_extractor.conv_layers[0]


@pytest.fixture(scope="module")
def model():
    """The tiny entry's architecture with a non-trivial GroupNorm affine (random init has 1 and 0)."""
    from transformers import HubertConfig, HubertModel

    from serbench import registry

    torch.manual_seed(0)
    net = HubertModel(HubertConfig(**registry.load_model("tiny").config)).eval()
    norm = _layer(net).layer_norm
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.normal_()
    return net


@pytest.mark.parametrize("samples", [16_000, 16_003, 7_777])
def test_folded_block_equals_conv_groupnorm_gelu(model, samples):
    """Batches of two clips of unequal loudness (so per-clip statistics differ), lengths that are
    and are not a multiple of the stride."""
    x = torch.randn(2, 1, samples, generator=torch.Generator().manual_seed(samples))
    x[1] = 3 * x[1] + 0.5
    original = _layer(model)
    with torch.no_grad(), first_conv.folded(model) as done:
        assert done and _layer(model) is not original
        folded = _layer(model)(x)
    assert _layer(model) is original
    with torch.no_grad():
        expected = original(x)
    assert folded.shape == expected.shape
    np.testing.assert_allclose(folded.numpy(), expected.numpy(), atol=2e-5 * float(expected.abs().max()))


def test_other_first_layers_are_left_as_they_are(model):
    """A layer-norm feature encoder (wav2vec2-large style) has no per-channel GroupNorm to fold."""
    from transformers import HubertConfig, HubertModel

    config = HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                          conv_dim=[16, 16], conv_kernel=[10, 4], conv_stride=[5, 4], feat_extract_norm="layer",
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    other = HubertModel(config).eval()
    original = _layer(other)
    with first_conv.folded(other) as done:
        assert not done and _layer(other) is original
