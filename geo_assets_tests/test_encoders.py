import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from geo_assets.embed.encoders import (  # noqa: E402
    EfficientNetLite0Encoder,
    EncodedImages,
    HfTextEncoder,
    HfVitEncoder,
    ImageEncoder,
    ModelNotFoundError,
    TextEncoder,
    make_image_encoder,
    make_text_encoder,
)

TEXTS = ["a grassy hillside with a fence by the road", "uk motorway Leicester Peterborough B1167", "a small town"]


def _images(n=3, h=120, w=200, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


# --- the offline defaults, for real -----------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return make_text_encoder("minilm")


@pytest.fixture(scope="module")
def effnet():
    return make_image_encoder("efficientnet-lite0")


def test_minilm_shapes_dtype_and_determinism(minilm):
    assert isinstance(minilm, TextEncoder)
    assert minilm.dim == 384
    assert "MiniLM" in minilm.encoder_id
    a = minilm.encode(TEXTS)
    assert a.shape == (3, 384) and a.dtype == np.float32 and np.all(np.isfinite(a))
    assert np.array_equal(a, minilm.encode(TEXTS))
    # batching (and its padding) does not change a row
    one_by_one = np.concatenate([minilm.encode([t]) for t in TEXTS])
    assert np.allclose(a, one_by_one, atol=1e-4)
    assert not np.allclose(a[0], a[1])
    assert minilm.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        minilm.encode("not a list")


def test_text_encoder_is_cached_per_process(minilm):
    again = make_text_encoder("minilm")
    assert again is minilm
    small = make_text_encoder("minilm", batch_size=2)
    assert small.model is minilm.model and small.batch_size == 2
    assert np.allclose(small.encode(TEXTS), minilm.encode(TEXTS), atol=1e-4)


def test_efficientnet_shapes_dtype_determinism(effnet):
    assert isinstance(effnet, ImageEncoder)
    assert effnet.dim == 1280
    out = effnet.encode(_images())
    assert isinstance(out, EncodedImages)
    assert out.cls.shape == (3, 1280) and out.tokens.shape == (3, 49, 1280)
    assert out.cls.dtype == np.float32 and out.tokens.dtype == np.float32
    assert np.allclose(out.cls, out.tokens.mean(axis=1), atol=1e-6)
    again = effnet.encode(_images())
    assert np.array_equal(out.tokens, again.tokens)
    empty = effnet.encode([])
    assert empty.cls.shape == (0, 1280) and empty.tokens.shape == (0, 49, 1280)


def test_efficientnet_accepts_gray_rgba_and_float(effnet):
    rgb = _images(1)[0]
    gray = rgb[:, :, 0]
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    out = effnet.encode([gray, rgba, rgb.astype(np.float32) / 255.0, rgb])
    assert out.cls.shape == (4, 1280)
    assert np.allclose(out.cls[1], out.cls[3], atol=1e-5)  # alpha dropped
    assert np.allclose(out.cls[2], out.cls[3], atol=1e-3)  # [0,1] floats rescaled
    with pytest.raises(ValueError, match="image 0"):
        effnet.encode([np.zeros((4, 4, 5), np.uint8)])


def test_efficientnet_top_labels_on_a_real_photo(effnet):
    import importlib.util

    import cv2

    spec = importlib.util.find_spec("skimage")  # a bundled photo of a cat; skimage itself is not imported
    photo = Path(list(spec.submodule_search_locations)[0]) / "data" / "chelsea.png" if spec else None
    if photo is None or not photo.is_file():
        pytest.skip("scikit-image's sample photo is not installed")
    cat = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    labels = effnet.top_labels([cat, _images(1)[0]], k=5)
    assert len(labels) == 2 and all(len(row) == 5 for row in labels)
    name, prob = labels[0][0]
    assert isinstance(name, str) and isinstance(prob, float)
    assert "cat" in name  # Egyptian cat
    assert all(a[1] >= b[1] for a, b in zip(labels[0], labels[0][1:]))
    assert sum(p for _, p in labels[0]) <= 1.0 + 1e-6
    assert len(effnet.top_labels([cat], k=3)[0]) == 3


def test_labels_and_tokens_share_one_backbone_pass(effnet):
    """The captioner's labels and the encoder's tokens of the same image come from one pass
    (feature cache), and equal what a fresh, uncached, default-memory-format torch model
    gives (the default CPU runtime is OpenVINO: float rounding only)."""
    from geo_assets.embed.encoders import EfficientNetLite0Encoder

    images = _images(4, h=480, w=640, seed=3)
    effnet.clear_feature_cache()
    labels = effnet.top_labels(images, k=5)
    calls = []
    if effnet._openvino is not None:
        original, owner, attr = effnet._openvino, effnet, "_openvino"
    else:
        original, owner, attr = effnet.model.extract_features, effnet.model, "extract_features"
    setattr(owner, attr, lambda x: calls.append(len(x)) or original(x))
    try:
        cached = effnet.encode(images)
        assert calls == []  # every image hit the cache
        effnet.encode(_images(1, h=480, w=640, seed=4))
        assert calls == [1]
    finally:
        setattr(owner, attr, original) if owner is effnet else delattr(owner, attr)
    plain = EfficientNetLite0Encoder(channels_last=False, cache_items=0, runtime="torch")
    assert plain.runtime == "torch" and plain.encoder_id == effnet.encoder_id
    reference = plain.encode(images)
    assert np.allclose(cached.tokens, reference.tokens, atol=1e-4)
    assert [[n for n, _ in row] for row in plain.top_labels(images, k=5)] == [[n for n, _ in row] for row in labels]


def test_image_encoder_cache_and_kinds(effnet):
    assert make_image_encoder() is effnet
    assert effnet.runtime.startswith("openvino-")  # the CPU default (a dependency, no GPU here)
    with pytest.raises(ValueError, match="unknown image encoder runtime"):
        EfficientNetLite0Encoder(runtime="tensorrt")
    assert make_image_encoder(batch_size=4).model is effnet.model
    with pytest.raises(ValueError, match="unknown image encoder"):
        make_image_encoder("resnet")
    with pytest.raises(ValueError, match="unknown text encoder"):
        make_text_encoder("gpt")


# --- the seed's big-model paths, with tiny random models written to disk ---------


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "road", "sign", "to", "london", "the", "hill",
             "##s", "grassy", "town", "small", "motorway", "uk"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_vit_dir(tmp_path_factory):
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = tmp_path_factory.mktemp("tiny-vit")
    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64)
    ViTModel(config, add_pooling_layer=False).save_pretrained(str(folder))
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(str(folder))
    return folder


def test_hf_text_encoder_loads_a_bert_folder(tiny_bert_dir):
    enc = HfTextEncoder(tiny_bert_dir, batch_size=2)
    assert enc.dim == 32
    out = enc.encode(TEXTS)
    assert out.shape == (3, 32) and out.dtype == np.float32
    assert np.array_equal(out, enc.encode(TEXTS))
    # CLS = position 0 of the last hidden state
    import torch

    tok = enc.tokenizer(TEXTS[:1], return_tensors="pt")
    with torch.no_grad():
        ref = enc.model(**tok).last_hidden_state[0, 0].numpy()
    assert np.allclose(out[0], ref, atol=1e-5)
    via_factory = make_text_encoder("bert", str(tiny_bert_dir))
    assert np.allclose(via_factory.encode(TEXTS), out, atol=1e-5)
    assert via_factory.encoder_id != make_text_encoder("minilm").encoder_id


def test_hf_vit_encoder_loads_a_vit_folder(tiny_vit_dir):
    enc = HfVitEncoder(tiny_vit_dir)
    assert enc.dim == 32
    out = enc.encode(_images(3, 50, 70))
    assert out.cls.shape == (3, 32)
    assert out.tokens.shape == (3, (32 // 8) ** 2 + 1, 32)
    assert np.array_equal(out.cls, out.tokens[:, 0])
    assert out.tokens.dtype == np.float32
    assert np.array_equal(out.tokens, enc.encode(_images(3, 50, 70)).tokens)
    via_factory = make_image_encoder("vit", str(tiny_vit_dir))
    assert np.allclose(via_factory.encode(_images(1)).cls, enc.encode(_images(1)).cls, atol=1e-5)


def test_missing_models_fail_clearly_and_never_download(tmp_path):
    missing = tmp_path / "bert-base-uncased"
    with pytest.raises(ModelNotFoundError, match="bert-base-uncased"):
        HfTextEncoder(missing)
    with pytest.raises(ModelNotFoundError, match=str(missing)):
        make_text_encoder("bert", str(missing))
    with pytest.raises(ModelNotFoundError, match="vit-missing"):
        HfVitEncoder(tmp_path / "vit-missing")
    with pytest.raises(ModelNotFoundError, match="needs model_path"):
        make_text_encoder("bert")
    with pytest.raises(ModelNotFoundError, match="needs model_path"):
        make_image_encoder("vit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="config.json"):
        HfTextEncoder(tmp_path / "empty")
    # a hub id that is not in the local cache is not fetched
    with pytest.raises(ModelNotFoundError, match="never downloaded"):
        make_text_encoder("bert", "geo-assets-tests/no-such-model")
    with pytest.raises(ModelNotFoundError, match="not found"):
        EfficientNetLite0Encoder(tmp_path / "nothing.pth")
