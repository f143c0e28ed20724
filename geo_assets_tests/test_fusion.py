import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from geo_assets.embed.fusion import CrossAttentionFusion, concat_features

ROOT = Path(__file__).resolve().parents[1]


def _inputs(n=5, t=49, text_dim=384, image_dim=1280, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, text_dim)).astype(np.float32), rng.uniform(0, 6, (n, t, image_dim)).astype(np.float32)


@pytest.fixture(scope="module")
def fusion():
    return CrossAttentionFusion(384, 1280)


def test_shape_and_dtype(fusion):
    text, tokens = _inputs()
    out = fusion.fuse(text, tokens)
    assert out.shape == (5, 768) and out.dtype == np.float32 and np.all(np.isfinite(out))
    assert fusion.fused_dim == 768
    assert fusion.fuse(text[:0], tokens[:0]).shape == (0, 768)


def test_deterministic_across_fresh_instances(fusion):
    other = CrossAttentionFusion(384, 1280)
    assert other.fusion_id == fusion.fusion_id
    for (k, a), (_, b) in zip(fusion.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a.cpu(), b.cpu()), k
    text, tokens = _inputs()
    assert np.array_equal(fusion.fuse(text, tokens), other.fuse(text, tokens))


def test_same_weights_in_another_process(fusion):
    code = ("from geo_assets.embed.fusion import CrossAttentionFusion as F; "
            "print(F(384, 1280, device='cpu').weights_sha256)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == fusion.weights_sha256


def test_does_not_touch_the_global_rng():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    CrossAttentionFusion(16, 24, fused_dim=32, heads=4)
    assert torch.equal(torch.rand(3), expected)


def test_frozen(fusion):
    assert all(not p.requires_grad for p in fusion.parameters())
    fusion.train()
    assert not fusion.training
    text, tokens = _inputs(2)
    before = fusion.fuse(text, tokens)
    fusion.train(True)
    assert np.array_equal(before, fusion.fuse(text, tokens))


def test_id_names_dims_heads_seed_and_changes_with_them(fusion):
    fid = fusion.fusion_id
    for part in ("t384", "i1280", "f768", "h8", "s1234"):
        assert part in fid
    other = CrossAttentionFusion(384, 1280, seed=99)
    assert other.fusion_id != fid and "s99" in other.fusion_id
    text, tokens = _inputs(2)
    assert not np.allclose(other.fuse(text, tokens), fusion.fuse(text, tokens))
    assert CrossAttentionFusion(384, 1280, heads=4).fusion_id != fid


def test_uses_both_text_and_image_and_rows_are_independent(fusion):
    text, tokens = _inputs(3)
    out = fusion.fuse(text, tokens)
    same_text = fusion.fuse(np.repeat(text[:1], 3, axis=0), tokens)
    assert not np.allclose(same_text[0], same_text[1], atol=1e-3)  # image changes the result
    same_image = fusion.fuse(text, np.repeat(tokens[:1], 3, axis=0))
    assert not np.allclose(same_image[0], same_image[1], atol=1e-3)  # text changes the result
    single = np.concatenate([fusion.fuse(text[i : i + 1], tokens[i : i + 1]) for i in range(3)])
    assert np.allclose(out, single, atol=1e-5)


def test_other_dims_and_token_counts():
    f = CrossAttentionFusion(32, 48, fused_dim=64, heads=4, seed=1)
    rng = np.random.default_rng(0)
    assert f.fuse(rng.normal(size=(2, 32)), rng.normal(size=(2, 197, 48))).shape == (2, 64)
    assert f.fuse(rng.normal(size=(2, 32)), rng.normal(size=(2, 48))).shape == (2, 64)  # one token each
    with pytest.raises(ValueError, match="text_cls"):
        f.fuse(rng.normal(size=(2, 31)), rng.normal(size=(2, 5, 48)))
    with pytest.raises(ValueError, match="image_tokens"):
        f.fuse(rng.normal(size=(2, 32)), rng.normal(size=(2, 5, 47)))
    with pytest.raises(ValueError, match="texts but"):
        f.fuse(rng.normal(size=(2, 32)), rng.normal(size=(3, 5, 48)))
    with pytest.raises(ValueError, match="divisible"):
        CrossAttentionFusion(32, 48, fused_dim=65, heads=4)


def test_concat_features():
    text = np.arange(6, dtype=np.float64).reshape(2, 3)
    image = np.ones((2, 4))
    out = concat_features(text, image)
    assert out.shape == (2, 7) and out.dtype == np.float32
    assert np.array_equal(out[:, :3], text) and np.array_equal(out[:, 3:], image)
    assert concat_features(text[0], image[0]).shape == (1, 7)
    with pytest.raises(ValueError):
        concat_features(text, image[:1])


def test_fast_forward_matches_textbook_cross_attention(fusion):
    text, tokens = _inputs(4)
    t, v = torch.from_numpy(text), torch.from_numpy(tokens)
    with torch.no_grad():
        fast = fusion(t, v)
        ref = fusion.reference_forward(t, v)
    assert torch.allclose(fast, ref, atol=1e-4)
    f = CrossAttentionFusion(32, 48, fused_dim=64, heads=4, seed=3)
    with torch.no_grad():  # non-zero biases too
        f.k_proj.bias.normal_()
        f.v_proj.bias.normal_()
        f.q_proj.bias.normal_()
        t, v = torch.randn(3, 32), torch.randn(3, 7, 48)
        assert torch.allclose(f(t, v), f.reference_forward(t, v), atol=1e-4)
