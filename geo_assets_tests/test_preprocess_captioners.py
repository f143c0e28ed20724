"""Captioners: the offline ImageNet-label captioner, and BLIP-2 / BLIP run for real on
tiny randomly initialised models saved to a temporary folder (nothing is downloaded)."""

import os

import numpy as np
import pytest

from geo_assets.preprocess import captioners
from geo_assets.preprocess.captioners import (
    SEED_PROMPT, Blip2Captioner, Captioner, CaptionerUnavailable, HfCaptionerFromPath, ImageNetLabelCaptioner,
    build_caption, caption_from_labels, imagenet_categories, make_captioner,
)


def test_seed_prompt_is_the_seeds_question():
    assert SEED_PROMPT == ("Question: Describe this UK location concisely, including road type, buildings, signs, "
                           "vegetation, and surroundings. Answer:")


def test_build_caption_appends_cleaned_ocr_text():
    assert build_caption("a car park in the middle of a residential area", "St Ninian High School") == \
        "a car park in the middle of a residential area St Ninian High School"
    assert build_caption("a small town on the banks of a river", "eurospar") == "a small town on the banks of a river eurospar"
    assert build_caption("a grassy hillside ", "") == "a grassy hillside"
    assert build_caption("", "A57  Sheffield") == "A57 Sheffield"
    assert build_caption("", "") == ""


def test_imagenet_categories_come_from_torchvision_offline():
    cats = imagenet_categories()
    assert len(cats) == 1000 and "picket fence" in cats and "church" in cats and "valley" in cats


def test_caption_from_labels():
    labels = [("picket fence", 0.4), ("church", 0.2), ("valley", 0.1), ("tench", 0.01)]
    assert caption_from_labels(labels) == "a rural scene with a picket fence, a church and a valley"
    assert caption_from_labels([("church", 0.5), ("picket fence", 0.3)]) == "a street scene with a church and a picket fence"
    assert caption_from_labels([("seashore", 0.6), ("cliff", 0.2)]) == "a coastal scene with a seashore and a cliff"
    assert caption_from_labels([("umbrella", 0.02), ("obelisk", 0.01)]) == "a street scene with an umbrella"  # top-1 always
    assert caption_from_labels([]) == "a street scene"


def test_imagenet_label_captioner_batches_through_label_fn():
    calls = []

    def label_fn(images):
        calls.append(len(images))
        return [[("church", 0.6), ("streetcar", 0.2)] for _ in images]

    cap = ImageNetLabelCaptioner(label_fn)
    assert isinstance(cap, Captioner)
    assert cap.captioner_id.startswith("imagenet-labels:efficientnet-lite0:v1")
    images = [np.zeros((48, 64, 3), np.uint8)] * 3
    assert cap.caption_batch(images) == ["a street scene with a church and a streetcar"] * 3
    assert calls == [3]
    assert cap.caption_batch([]) == []
    bad = ImageNetLabelCaptioner(lambda images: [])
    with pytest.raises(ValueError, match="label lists"):
        bad.caption_batch(images)


def test_make_captioner_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown captioner kind 'gpt'"):
        make_captioner("gpt")
    with pytest.raises(ValueError, match="label_fn"):
        make_captioner("imagenet-labels")
    assert isinstance(make_captioner("imagenet-labels", None, label_fn=lambda ims: [[("church", 1.0)]] * len(ims)),
                      ImageNetLabelCaptioner)
    with pytest.raises(CaptionerUnavailable, match="needs model_path"):
        make_captioner("blip2", None)
    missing = tmp_path / "no-such-model"
    with pytest.raises(CaptionerUnavailable, match=str(missing)):
        make_captioner("blip2", str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(CaptionerUnavailable, match=f"no weights in '{empty}'"):
        make_captioner("blip", str(empty))
    with pytest.raises(CaptionerUnavailable, match="no config.json"):
        Blip2Captioner(str(tmp_path))


# --------------------------------------------------------------------------- tiny real models


def _tiny_blip2(path):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, Blip2QFormerConfig, Blip2VisionConfig,
        BlipImageProcessor, OPTConfig, PreTrainedTokenizerFast,
    )

    # A byte-level BPE tokenizer (the OPT kind), trained offline on a few sentences.
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([SEED_PROMPT + " a road with houses, trees and a church"] * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>")
    processor = Blip2Processor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer, num_query_tokens=4)
    vocab = len(tokenizer)
    config = Blip2Config(
        vision_config=Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, image_size=32, patch_size=8).to_dict(),
        qformer_config=Blip2QFormerConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                          intermediate_size=64, encoder_hidden_size=32, vocab_size=vocab).to_dict(),
        text_config=OPTConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, ffn_dim=64, num_attention_heads=2,
                              max_position_embeddings=128, word_embed_proj_dim=32, pad_token_id=0, bos_token_id=1,
                              eos_token_id=1).to_dict(),
        num_query_tokens=4, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(0)
    Blip2ForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _tiny_blip(path):
    import torch
    from transformers import (
        BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor, BlipTextConfig,
        BlipVisionConfig,
    )

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "street", "with", "houses", "and", "trees",
             "road", "the", "of", "picture", "church"]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, bos_token="[DEC]")
    processor = BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer)
    config = BlipConfig(
        vision_config=BlipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                       image_size=32, patch_size=8).to_dict(),
        text_config=BlipTextConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, encoder_hidden_size=32, max_position_embeddings=64,
                                   bos_token_id=5, pad_token_id=0, sep_token_id=3, eos_token_id=3).to_dict(),
    )
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _spy_generate(captioner):
    calls = []
    original = captioner.model.generate

    def generate(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    captioner.model.generate = generate
    return calls


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    assert os.environ.get("HF_HUB_OFFLINE") == "1" and os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    root = tmp_path_factory.mktemp("tiny_captioners")
    return {"blip2": _tiny_blip2(root / "tiny-blip2"), "blip": _tiny_blip(root / "tiny-blip")}


def _images(n):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (48 + 8 * i, 64, 3), dtype=np.uint8) for i in range(n)]


def test_blip2_captioner_runs_a_local_model_with_the_seed_prompt(tiny_models):
    captioners.clear_captioner_cache()
    cap = make_captioner("blip2", str(tiny_models["blip2"]), device="cpu", batch_size=2, max_new_tokens=6)
    assert isinstance(cap, Blip2Captioner) and isinstance(cap, Captioner)
    assert cap.prompt == SEED_PROMPT and cap.device == "cpu"
    assert cap.captioner_id.startswith("blip2:tiny-blip2:")
    assert make_captioner("blip2", str(tiny_models["blip2"]), device="cpu", batch_size=2, max_new_tokens=6) is cap
    calls = _spy_generate(cap)
    out = cap.caption_batch(_images(3))
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    assert len(calls) == 2  # batches of 2 + 1
    assert calls[0]["pixel_values"].shape[0] == 2 and calls[0]["input_ids"].shape[0] == 2
    prompt_ids = cap.processor.tokenizer(SEED_PROMPT, add_special_tokens=False)["input_ids"]
    assert calls[0]["input_ids"][0, -len(prompt_ids):].tolist() == prompt_ids  # left-padded prompt at the end
    assert all(SEED_PROMPT not in t for t in out)  # the echoed prompt is cut off


def test_blip_captioner_runs_a_local_model(tiny_models):
    cap = HfCaptionerFromPath(str(tiny_models["blip"]), device="cpu", max_new_tokens=5)
    assert cap.captioner_id.startswith("blip:tiny-blip:")
    calls = _spy_generate(cap)
    out = cap.caption_batch(_images(2))
    assert len(out) == 2 and all(isinstance(t, str) for t in out) and len(calls) == 1
    conditioned = HfCaptionerFromPath(str(tiny_models["blip"]), device="cpu", prompt="a picture of", max_new_tokens=5)
    assert conditioned.captioner_id != cap.captioner_id  # the prompt is part of the cache key
    assert all(isinstance(t, str) and not t.startswith("a picture of") for t in conditioned.caption_batch(_images(1)))
    assert isinstance(make_captioner("blip", str(tiny_models["blip"]), device="cpu"), HfCaptionerFromPath)


def test_wrong_model_kind_in_a_folder_fails_clearly(tiny_models):
    with pytest.raises(CaptionerUnavailable, match="holds a 'blip' model, expected 'blip-2'"):
        Blip2Captioner(str(tiny_models["blip"]), device="cpu")
    with pytest.raises(CaptionerUnavailable, match="expected 'blip'"):
        HfCaptionerFromPath(str(tiny_models["blip2"]), device="cpu")
