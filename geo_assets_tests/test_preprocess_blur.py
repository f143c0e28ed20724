"""Text-region detection and blur: geometry, coverage, and real post-blur readability."""

import cv2
import numpy as np
import pytest

from geo_assets.preprocess import blur
from geo_assets.bench.ocr_engines import matching_words
from geo_assets.preprocess.ocr import make_ocr_engine
from geo_assets.preprocess.text_images import make_text_image, text_images
from geo_assets.preprocess.variants import make_blurred_variant, ocr_image, reread_blurred

SHAPE = (480, 640)


def rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_every_blur_option_is_part_of_the_blur_version():
    """Changing any option the blur uses must re-blur (the asset keys its cache by this version)."""
    from geo_assets.defs.assets.preprocess import BlurConfig

    default = BlurConfig()
    assert default.blur_version().startswith(blur.BLUR_VERSION)
    changed = [BlurConfig(scales=[1.0]), BlurConfig(original_scales=[2.0]), BlurConfig(sign_boards=False),
               BlurConfig(padding_frac=0.25), BlurConfig(padding_px=3)]
    versions = {c.blur_version() for c in changed} | {default.blur_version()}
    assert len(versions) == len(changed) + 1
    # and the asset passes every one of them to the blur
    assert set(default.variant_kwargs()) == {"scales", "original_scales", "sign_boards", "padding_frac", "padding_px"}


def test_pad_box_grows_along_the_box_axes():
    padded = blur.pad_box(rect(100, 100, 200, 120), padding_frac=0.5, padding_px=2)
    xs, ys = padded[:, 0], padded[:, 1]
    # text height 20 -> pad 0.5 * 20 + 2 = 12 on every side
    assert xs.min() == pytest.approx(88) and xs.max() == pytest.approx(212)
    assert ys.min() == pytest.approx(88) and ys.max() == pytest.approx(132)
    # a rotated box stays a rotated box of the padded size
    c, (w, h), _ = cv2.minAreaRect(blur.pad_box([[0, 0], [100, 17.6], [96.5, 37.3], [-3.5, 19.7]], padding_frac=0, padding_px=5))
    assert sorted([w, h]) == pytest.approx([30.0, 111.5], abs=1.0)


def test_coverage_from_boxes_and_from_masks():
    gt = rect(100, 100, 200, 120)
    assert blur.blur_coverage([gt], [gt], SHAPE, padding_frac=0, padding_px=0) == [pytest.approx(1.0, abs=0.02)]
    half = rect(100, 100, 150, 120)
    assert blur.blur_coverage([half], [gt], SHAPE, padding_frac=0, padding_px=0)[0] == pytest.approx(0.5, abs=0.05)
    assert blur.blur_coverage([], [gt], SHAPE) == [0.0]
    mask = np.zeros(SHAPE, bool)
    mask[100:121, 100:201] = True
    assert blur.blur_coverage(mask, [gt, rect(300, 300, 320, 310)], SHAPE) == [pytest.approx(1.0, abs=0.02), 0.0]
    # boxes from JSON (lists of lists) are what the asset stores
    assert blur.blur_coverage([[[100.0, 100.0], [200.0, 100.0], [200.0, 120.0], [100.0, 120.0]]], [gt], SHAPE)[0] > 0.99
    # padding helps a box that is a little short
    short = rect(104, 102, 196, 118)
    assert blur.blur_coverage([short], [gt], SHAPE, padding_frac=0, padding_px=0)[0] < 0.8
    assert blur.blur_coverage([short], [gt], SHAPE)[0] > 0.99


def test_blur_regions_changes_only_the_padded_boxes():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (*SHAPE, 3), dtype=np.uint8)
    original = img.copy()
    boxes = [rect(100, 100, 300, 130), [[400, 300], [500, 320], [495, 345], [395, 325]]]
    out = blur.blur_regions(img, boxes)
    assert np.array_equal(img, original)  # input untouched
    mask = blur.blur_mask(boxes, SHAPE)
    assert np.array_equal(out[~mask], original[~mask])
    changed = np.any(out != original, axis=2)
    assert changed[mask].mean() > 0.95
    # strong: the local variance of noise inside the box collapses
    assert out[110:120, 150:250].std() < 0.25 * original[110:120, 150:250].std()


def test_blur_regions_explicit_kernel_edges_and_degenerate_boxes():
    img = np.full((*SHAPE, 3), 255, np.uint8)
    cv2.putText(img, "EDGE", (0, 470), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    out = blur.blur_regions(img, [rect(-20, 440, 100, 500), rect(10, 10, 10, 10), rect(600, 5, 700, 40)],
                            kernel=31, sigma=8.0)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert blur.blur_regions(img, []) is not img and np.array_equal(blur.blur_regions(img, []), img)
    k, s, cell = blur.blur_params(20.0)
    assert k % 2 == 1 and s >= blur.MIN_SIGMA and cell >= 1
    assert blur.blur_params(20.0, kernel=10)[0] == 11  # kernels are odd


class FakeEngine:
    name, version = "fake", "0"

    def __init__(self, boxes):
        self.boxes = boxes
        self.calls = []

    def detect(self, image_bgr, *, low_threshold=False, scale=1.0):
        self.calls.append((image_bgr.copy(), low_threshold, scale))
        return self.boxes


def test_detect_text_regions_is_the_union_of_all_passes():
    img = make_text_image(5).image_bgr
    ocr_box = rect(10, 10, 60, 30)
    engine = FakeEngine([rect(100, 100, 150, 120), rect(10, 10, 60, 30)])
    boxes = blur.detect_text_regions(img, [engine], [ocr_box], scales=(1.0, 2.0), low_threshold=True, sign_boards=False)
    assert [s for _, _, s in engine.calls] == [1.0, 2.0]
    assert all(low for _, low, _ in engine.calls)
    assert len(boxes) == 2  # the duplicate OCR/detection box is kept once
    # the passes see the contrast-normalised image (grey), the original when asked
    seen = engine.calls[0][0]
    assert np.array_equal(seen, blur.contrast_normalize(img))
    engine.calls.clear()
    blur.detect_text_regions(img, [engine], [], scales=(1.0,), normalize_contrast=False)
    assert np.array_equal(engine.calls[0][0], img)
    assert blur.detect_text_regions(img, [], [ocr_box], sign_boards=False) == [normalize(ocr_box)]
    # extra passes on the original image
    engine.calls.clear()
    blur.detect_text_regions(img, [engine], [], scales=(1.0,), original_scales=(2.0,))
    assert [s for _, _, s in engine.calls] == [1.0, 2.0]
    assert np.array_equal(engine.calls[0][0], blur.contrast_normalize(img))
    assert np.array_equal(engine.calls[1][0], img)


def normalize(box):
    return [[float(x), float(y)] for x, y in box]


def _scene_with_boards(seed: int = 0):
    """Grainy grass, one small white board (dark rim, tilted) carrying faint 6 px text,
    one plain board with nothing on it, and a big facade: (image, text box)."""
    rng = np.random.default_rng(seed)
    img = np.clip(np.full((*SHAPE, 3), (60, 140, 70), np.float32) + rng.normal(0, 4, (*SHAPE, 3)), 0, 255).astype(np.uint8)
    board = np.full((26, 70, 3), 240, np.uint8)
    cv2.rectangle(board, (0, 0), (69, 25), (40, 40, 40), 1)
    cv2.putText(board, "B3381 Oke", (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (200, 200, 200), 1, cv2.LINE_AA)
    m = cv2.getRotationMatrix2D((35, 13), 6, 1.0)
    warped = cv2.warpAffine(board, m, (70, 26), borderValue=(60, 140, 70))
    img[200:226, 100:170] = warped
    cv2.rectangle(img, (300, 200), (360, 224), (240, 240, 240), -1)  # a plain board: no marks
    cv2.rectangle(img, (420, 60), (620, 400), (60, 90, 170), -1)  # a facade: too big to be a sign
    text_box = [[105, 205], [165, 205], [165, 221], [105, 221]]
    return img, text_box


def test_find_sign_boards_finds_a_small_board_whose_text_nothing_found():
    img, text_box = _scene_with_boards()
    boards = blur.find_sign_boards(img)
    assert len(boards) == 1  # not the plain board, not the facade
    assert blur.blur_coverage(boards, [text_box], SHAPE, padding_frac=0, padding_px=0)[0] >= 0.95
    # once the text is covered by a found region, the board is left alone
    covered = blur.blur_mask([text_box], SHAPE)
    assert blur.find_sign_boards(img, covered) == []
    # a blank image has no boards
    assert blur.find_sign_boards(np.full((*SHAPE, 3), 128, np.uint8)) == []


def test_detect_text_regions_adds_boards_only_when_their_marks_are_missed():
    img, text_box = _scene_with_boards()
    missed = blur.detect_text_regions(img, [FakeEngine([])], [], scales=(1.0,))
    assert blur.blur_coverage(missed, [text_box], SHAPE)[0] >= 0.8
    assert len(missed) == 1
    found = blur.detect_text_regions(img, [FakeEngine([text_box])], [], scales=(1.0,))
    assert found == [normalize(text_box)]
    assert blur.detect_text_regions(img, [FakeEngine([])], [], scales=(1.0,), sign_boards=False) == []


@pytest.mark.parametrize("image_id, text", [("7805245166190449", "A398"), ("2219924803824395", "Clovenfords Chippy")])
def test_sign_boards_cover_tiny_faint_world_text_the_detector_misses(image_id, text):
    """Real RapidOCR on synthetic-world (world-v2) signs with text under 11 px at contrast 0.14-0.21: the
    detection passes miss it, the board fallback covers it."""
    from geo_assets.synthetic.world import SyntheticWorld

    world = SyntheticWorld(seed=0)
    rendered = world.render(image_id)
    img = cv2.imdecode(np.frombuffer(rendered.jpeg, np.uint8), cv2.IMREAD_COLOR)
    polygon = [list(p) for t in rendered.texts if t.text == text for p in t.polygon]
    engine = make_ocr_engine("rapidocr", "cpu")
    ocr_pass = ocr_image(engine, img)
    words = [w.box for w in ocr_pass.words] + ocr_pass.regions  # what the blurred_images asset starts from
    without = blur.detect_text_regions(img, [engine], words, sign_boards=False)
    with_boards = blur.detect_text_regions(img, [engine], words)
    assert blur.blur_coverage(without, [polygon], img.shape)[0] < 0.8
    assert blur.blur_coverage(with_boards, [polygon], img.shape)[0] >= 0.8


def test_contrast_normalize_lifts_faint_text():
    img = np.full((*SHAPE, 3), 120, np.uint8)
    cv2.putText(img, "faint", (100, 200), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (135, 135, 135), 3)
    norm = blur.contrast_normalize(img)
    assert norm.shape == img.shape
    assert np.ptp(norm[160:210, 100:220]) > 5 * np.ptp(img[160:210, 100:220])


def _blur_and_check(images, reader_names):
    primary = make_ocr_engine("rapidocr")
    readers = [make_ocr_engine(n) for n in reader_names]
    coverages, before, after = [], 0, []
    for ti in images:
        truths = [t.text for t in ti.texts]
        ocr_pass = ocr_image(primary, ti.image_bgr)  # the OCR pass: words + its low-threshold regions
        words = ocr_pass.words
        before += len(matching_words(words, truths))
        boxes = blur.detect_text_regions(ti.image_bgr, [primary], [w.box for w in words] + ocr_pass.regions)
        coverages += blur.blur_coverage(boxes, [t.polygon for t in ti.texts], ti.image_bgr.shape)
        blurred = blur.blur_regions(ti.image_bgr, boxes)
        for reader in readers:
            after += matching_words(reader.read(blurred), truths)
    return np.asarray(coverages), before, after


def test_blur_leaves_nothing_readable_on_rendered_images():
    cov, before, after = _blur_and_check(text_images(2, start_seed=1000), ["rapidocr"])
    assert before >= 3  # the text was readable before
    assert (cov >= 0.8).mean() >= 0.9
    assert after == []


@pytest.mark.slow
def test_blur_coverage_and_readability_on_many_images_with_both_engines():
    images = text_images(10, start_seed=1100)
    cov, before, after = _blur_and_check(images, ["rapidocr"])
    assert before >= 15
    assert (cov >= 0.8).mean() >= 0.97, f"{(cov >= 0.8).mean():.3f} of {len(cov)} boxes >= 80% covered"
    assert after == []
    # the second engine (EasyOCR) reads nothing either, on the images with the most text
    busiest = sorted(images, key=lambda ti: -len(ti.texts))[:2]
    _, before_e, after_e = _blur_and_check(busiest, ["easyocr"])
    assert after_e == []


def test_changed_windows_hold_the_changes_with_context_and_do_not_overlap():
    mask = np.zeros(SHAPE, bool)
    assert blur.changed_windows(mask) == []
    mask[100:110, 100:150] = True
    mask[100:110, 200:250] = True  # 50 px apart: their context overlaps, one window
    mask[400:410, 500:520] = True
    windows = blur.changed_windows(mask, context_px=30)
    assert len(windows) == 2
    for x0, y0, x1, y1 in windows:
        assert 0 <= x0 < x1 <= SHAPE[1] and 0 <= y0 < y1 <= SHAPE[0]
    covered = np.zeros(SHAPE, bool)
    for x0, y0, x1, y1 in windows:
        covered[y0:y1, x0:x1] = True
    assert covered[mask].all() and covered[70:140, 70:280].all()
    assert not covered[250:300].any()
    big = np.zeros(SHAPE, bool)
    big[::60, ::60] = True  # context everywhere: one full read is cheaper
    assert blur.changed_windows(big, context_px=48) is None


def test_windowed_reread_reads_what_a_full_read_reads_where_the_image_changed():
    """The blurred variant's re-read looks only around the blurred regions; elsewhere the image
    is the original, whose words were all blurred. On a rendered sign with an unblurred word
    left in place, the windows find the words a full read finds near the changes."""
    engine = make_ocr_engine("rapidocr")
    ti = make_text_image(1003, overlay_prob=0.0)
    ocr_pass = ocr_image(engine, ti.image_bgr)
    variant = make_blurred_variant(ti.image_bgr, engine, ocr_pass.words, regions=ocr_pass.regions)
    truths = [t.text for t in ti.texts]
    assert matching_words(ocr_pass.words, truths) and variant.boxes
    assert matching_words(variant.words_after, truths) == []
    # A changed image region with readable text in it: the windowed read finds it, like a full read.
    page = make_text_image(1004, overlay_prob=0.0).image_bgr
    changed = np.zeros(SHAPE, bool)
    changed[:, : SHAPE[1] // 2] = True
    windowed = reread_blurred(engine, page, changed)
    full = [w for w in engine.read(page) if np.asarray(w.box)[:, 0].max() < SHAPE[1] // 2]
    assert {w.text for w in full} <= {w.text for w in windowed}
