"""The folder image source on JPEG fixtures these tests write: EXIF GPS and times, a
mapillary_tools description file, a CSV sidecar, the reject reasons, hostile names and
links, sequences cut by time and distance, and incremental pulls that open nothing new."""

import io
import json
import os
from datetime import datetime, timezone

import numpy as np
import pytest
from PIL import ExifTags, Image

from geo_assets.data.real_sets import real_data_dir
from geo_assets.folder.metadata import clean_sequence_id, parse_time
from geo_assets.folder.scan import FolderMissingError, list_folder
from geo_assets.folder.sequences import TimedPoint, cut_sequences, metres
from geo_assets.folder.sidecars import relative_in_folder
from geo_assets.geo.bbox import BBox
from geo_assets.geo.tiles import Tile
from geo_assets.ingest.folder_pull import image_id_of, pull_folder_tile
from geo_assets.store.layout import StorageLayout

# Two tiles around Lund, as tiles_for_region((BBox(13.0, 55.6, 13.4, 55.8),), 0.2) makes them
# (built directly: the land mask outside the UK costs seconds to load).
WEST, EAST = Tile(BBox(13.0, 55.6, 13.2, 55.8)), Tile(BBox(13.2, 55.6, 13.4, 55.8))
TILES = (WEST, EAST)
LUND = real_data_dir() / "lund_exif"
T0 = datetime(2024, 5, 1, 9, 0, 0, tzinfo=timezone.utc)


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    return float(d), float(m), round((value - d - m / 60) * 3600, 4)


def jpeg(seed: int, lat: float | None = None, lon: float | None = None, when: datetime | None = None,
         offset: str | None = None, description: dict | None = None, size=(320, 240)) -> bytes:
    """A noisy (so it passes the colour and sharpness checks) JPEG with the EXIF asked for."""
    rgb = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    exif = Image.Exif()
    if lat is not None:
        exif[ExifTags.IFD.GPSInfo] = {1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W", 4: dms(lon)}
    if when is not None:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        sub[36867] = when.strftime("%Y:%m:%d %H:%M:%S")
        if offset:
            sub[36881] = offset
    if description is not None:
        exif[270] = json.dumps(description)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", exif=exif, quality=90)
    return out.getvalue()


def pull(folder, tile, layout, known=None, max_new=1000):
    known = known or {"ids": set(), "sha": set(), "positions": {}}
    result = pull_folder_tile(folder, tile, layout, tiles=TILES, known_ids=known["ids"], known_sha256=known["sha"],
                              max_new=max_new, known_positions=known["positions"])
    known["ids"] |= {r["image_id"] for r in result.rows} | {r["image_id"] for r in result.rejects}
    known["sha"] |= {r["sha256"] for r in result.rows}
    for r in result.rows:
        known["positions"].setdefault(r["sequence_id"], []).append((r["lat"], r["lon"]))
    return result, known


@pytest.fixture
def layout(tmp_path):
    return StorageLayout(tmp_path / "storage", tmp_path / "models")


def test_parse_times_sequence_ids_and_sidecar_paths(tmp_path):
    assert parse_time("2014_06_07_10_24_05_656") == ms(datetime(2014, 6, 7, 10, 24, 5, 656000, tzinfo=timezone.utc))
    assert parse_time("2021:03:04 10:11:12") == ms(datetime(2021, 3, 4, 10, 11, 12, tzinfo=timezone.utc))
    assert parse_time("2021-03-04T10:11:12+02:00") == ms(datetime(2021, 3, 4, 8, 11, 12, tzinfo=timezone.utc))
    assert parse_time("1700000000000") == 1700000000000
    assert parse_time("2021_13_40_10_11_12_000") is None and parse_time("soon") is None and parse_time(None) is None
    assert clean_sequence_id("0F3F9BEF-DC5B-4704-9435-C18EC44702C9") == "0F3F9BEF-DC5B-4704-9435-C18EC44702C9"
    odd = clean_sequence_id("drive 1/../x")
    assert odd.startswith("s-") and odd == clean_sequence_id("drive 1/../x") and odd != clean_sequence_id("drive 2")
    assert clean_sequence_id("  ") == "" and clean_sequence_id(None) == ""
    root = tmp_path / "photos"
    assert relative_in_folder("a/b.jpg", root / "sub", root) == "sub/a/b.jpg"
    assert relative_in_folder("../../etc/passwd", root / "sub", root) is None
    assert relative_in_folder("../b.jpg", root / "sub", root) == "b.jpg"
    # An export made elsewhere names its files absolutely: matched by name in the sidecar's folder.
    assert relative_in_folder("/home/someone/capture/x.jpg", root / "sub", root) == "sub/x.jpg"
    assert relative_in_folder(str(root / "sub" / "y.jpg"), root / "other", root) == "sub/y.jpg"


def test_sequences_cut_on_time_gap_distance_and_folder():
    lat, lon = 55.70, 13.19
    step = 10 / 111_320  # ~10 m north per photo
    pts = [TimedPoint(f"a/{i:02d}.jpg", "a", ms(T0) + i * 5000, lat + i * step, lon) for i in range(6)]
    pts.append(TimedPoint("a/06.jpg", "a", ms(T0) + 5 * 5000 + 61_000, lat + 6 * step, lon))  # 61 s gap
    pts.append(TimedPoint("a/07.jpg", "a", ms(T0) + 5 * 5000 + 66_000, lat + 0.01, lon))  # ~1.1 km jump
    pts.append(TimedPoint("b/00.jpg", "b", ms(T0) + 1000, lat + step, lon))  # same time and place, other folder
    seqs = cut_sequences(pts)
    assert len({seqs[f"a/{i:02d}.jpg"] for i in range(6)}) == 1
    assert len({seqs["a/00.jpg"], seqs["a/06.jpg"], seqs["a/07.jpg"], seqs["b/00.jpg"]}) == 4
    assert all(s.startswith("auto-") for s in seqs.values())
    # Ids hang on the first photo only: more photos at the end (or renamed files) keep them.
    more = cut_sequences(pts[:6] + [TimedPoint("a/renamed.jpg", "a", ms(T0) + 30_000, lat + 7 * step, lon)])
    assert more["a/00.jpg"] == seqs["a/00.jpg"] == more["a/renamed.jpg"]
    assert 1100 < metres(lat, lon, lat + 0.01, lon) < 1125
    with pytest.raises(ValueError):
        cut_sequences(pts, max_gap_s=0)


def test_fixtures_pulled_into_their_tiles_with_reject_reasons(tmp_path, layout):
    root = tmp_path / "photos"
    (root / "drive").mkdir(parents=True)
    (root / "export").mkdir()
    (root / "listed").mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    west = (55.70, 13.19)
    east = (55.71, 13.25)
    # EXIF GPS + DateTimeOriginal with offset, a drive of three 10 m apart (one sequence by time).
    for i in range(3):
        (root / "drive" / f"{i}.jpg").write_bytes(
            jpeg(i, west[0] + i * 1e-4, west[1], T0.replace(second=i * 5), offset="+02:00"))
    (root / "drive" / "east.jpg").write_bytes(jpeg(10, *east, T0.replace(minute=30)))
    (root / "drive" / "nogps.jpg").write_bytes(jpeg(11, when=T0))
    (root / "drive" / "london.jpg").write_bytes(jpeg(12, 51.5, -0.12, T0))
    (root / "drive" / "notime.jpg").write_bytes(jpeg(13, 55.72, 13.15))
    (root / "drive" / "png.jpg").write_bytes(_png())
    (root / "drive" / "garbage.jpeg").write_bytes(os.urandom(5000))
    truncated = jpeg(14, 55.73, 13.16, T0)
    (root / "drive" / "truncated.jpg").write_bytes(truncated[: len(truncated) // 2])
    hostile = "we\nird ;rm -rf $(x) \u00e9.JPG"
    (root / "drive" / hostile).write_bytes(jpeg(15, 55.74, 13.17, T0.replace(hour=11)))
    (root / "drive" / "notes.txt").write_text("not a photo")
    (root / "drive" / ".hidden.jpg").write_bytes(jpeg(16, *west, T0))
    (outside / "secret.jpg").write_bytes(jpeg(17, *west, T0))
    os.symlink(outside / "secret.jpg", root / "drive" / "link_out.jpg")
    os.symlink(outside, root / "linked_folder")
    os.mkfifo(root / "drive" / "fifo.jpg")
    # mapillary_tools export: no EXIF position; the description file (absolute names from
    # the machine that made it) gives position, time and sequence.
    for i in range(2):
        (root / "export" / f"m{i}.jpg").write_bytes(jpeg(20 + i))
    (root / "export" / "mapillary_image_description.json").write_text(json.dumps([
        {"filename": f"/mnt/card/DCIM/m{i}.jpg", "filetype": "image", "MAPLatitude": east[0] + i * 1e-4,
         "MAPLongitude": east[1], "MAPCaptureTime": f"2024_05_01_10_00_0{i}_000", "MAPSequenceUUID": "seq-export-1"}
        for i in range(2)] + [{"filename": "/mnt/card/DCIM/bad.jpg", "error": {"type": "MapillaryGeoTaggingError"}}]))
    # CSV sidecar: position, time and sequence; one row with a garbled position.
    (root / "listed" / "c0.jpg").write_bytes(jpeg(30))
    (root / "listed" / "c1.jpg").write_bytes(jpeg(31))
    (root / "listed" / "geotags.csv").write_text(
        "file,lat,lon,captured_at,sequence_id\n"
        f"c0.jpg,{west[0] + 0.01},{west[1]},2024-05-01T12:00:00Z,walk 7\n"
        "c1.jpg,north-ish,13.1,2024-05-01T12:00:05Z,walk 7\n"
        "../../escape.jpg,55.7,13.1,,\n")
    (root / "listed" / "other.csv").write_text("a,b\n1,2\n")  # not a sidecar: ignored

    w, _ = pull(root, WEST, layout)
    e, _ = pull(root, EAST, layout)

    rows = {r["path"]: r for r in w.rows + e.rows}
    by_reason = {}
    for r in w.rejects + e.rejects:
        by_reason.setdefault(r["reason"], []).append(r["detail"])
    west_ids = {r["image_id"] for r in w.rows}
    assert len(w.rows) == 5 and len(e.rows) == 3, (w.rows, e.rows, by_reason)
    assert all(WEST.bbox.contains(r["lat"], r["lon"]) for r in w.rows)
    assert all(EAST.bbox.contains(r["lat"], r["lon"]) for r in e.rows)
    # Every row: an 18-digit id from the content, the stored copy's bytes, a sequence.
    for r in w.rows + e.rows:
        stored = layout.root / r["path"]
        assert r["image_id"] == image_id_of(r["sha256"]) and len(r["image_id"]) == 18 and r["image_id"].isdigit()
        assert stored.is_file() and stored.name == f"{r['image_id']}.jpg" and r["sequence_id"] and r["source"] == "folder"
    drive = [r for r in w.rows if r["captured_at"] < ms(T0.replace(minute=1))]
    assert sorted(r["captured_at"] for r in drive) == [ms(T0.replace(second=s)) - 2 * 3600_000 for s in (0, 5, 10)]
    assert len({r["sequence_id"] for r in drive}) == 1 and drive[0]["sequence_id"].startswith("auto-")
    export = [r for r in e.rows if r["sequence_id"] == "seq-export-1"]
    assert len(export) == 2 and {r["captured_at"] for r in export} == {ms(T0.replace(hour=10, second=s)) for s in (0, 1)}
    listed = [r for r in w.rows if r["captured_at"] == ms(T0.replace(hour=12))]
    assert len(listed) == 1 and listed[0]["sequence_id"].startswith("s-")  # "walk 7" is not a bare token
    assert any(r["captured_at"] == ms(T0.replace(hour=11)) for r in w.rows)  # the hostile name, stored by id
    assert west_ids.isdisjoint(r["image_id"] for r in e.rows)

    # Rejects: one row each, all in the first (west) tile when no tile holds the photo.
    assert {k: len(v) for k, v in by_reason.items()} == {
        "missing_coordinates": 1, "outside_region": 1, "missing_captured_at": 1, "not_jpeg": 1, "undecodable": 2,
        "bad_coordinates": 1}, by_reason
    assert not e.rejects
    assert any("'drive/nogps.jpg'" in d for d in by_reason["missing_coordinates"])
    assert any("'drive/london.jpg'" in d and "51.5" in d for d in by_reason["outside_region"])
    assert any("truncated" in d for d in by_reason["undecodable"])
    assert all("\n" not in d for v in by_reason.values() for d in v)
    skipped = w.stats["skipped"]
    assert skipped == {"not_jpeg_name": 1, "hidden": 1, "link_outside_folder": 1, "symlinked_folder": 1,
                       "not_regular_file": 1}, skipped
    assert not any("secret" in p for p in rows)


def test_incremental_pulls_open_only_new_or_changed_files(tmp_path, layout):
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(4):
        (root / f"{i}.jpg").write_bytes(jpeg(i, 55.70 + i * 1e-3, 13.19, T0.replace(minute=i)))
    (root / "nogps.jpg").write_bytes(jpeg(9, when=T0))
    first, known = pull(root, WEST, layout)
    assert len(first.rows) == 4 and [r["reason"] for r in first.rejects] == ["missing_coordinates"]
    assert first.stats["header_reads"] == 5 and first.stats["content_reads"] == 5

    # Nothing new: no file is opened, not even its header; made unreadable to prove it.
    if os.geteuid() != 0:
        for p in root.iterdir():
            p.chmod(0)
    second, known = pull(root, WEST, layout, known)
    assert (len(second.rows), len(second.rejects)) == (0, 0)
    assert second.stats["header_reads"] == 0 and second.stats["content_reads"] == 0
    assert second.stats["known_skipped"] == 5
    for p in root.iterdir():
        p.chmod(0o644)

    # Max new per pull: the rest wait, unread, for the next pull.
    (root / "new_a.jpg").write_bytes(jpeg(20, 55.75, 13.19, T0.replace(hour=14)))
    (root / "new_b.jpg").write_bytes(jpeg(21, 55.76, 13.19, T0.replace(hour=15)))
    capped, known = pull(root, WEST, layout, known, max_new=1)
    assert [r["captured_at"] for r in capped.rows] == [ms(T0.replace(hour=14))] and capped.stats["content_reads"] == 1

    # A changed file (re-geotagged) and an added one are read; nothing else is.
    (root / "1.jpg").write_bytes(jpeg(1, 55.78, 13.19, T0.replace(minute=1)))
    st = (root / "1.jpg").stat()
    os.utime(root / "1.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    (root / "sub").mkdir()
    (root / "sub" / "added.jpg").write_bytes(jpeg(5, 55.72, 13.19, T0.replace(minute=5)))
    third, known = pull(root, WEST, layout, known)
    assert third.stats["header_reads"] == 2 and third.stats["content_reads"] == 3  # + new_b, waiting since
    assert len(third.rows) == 3 and not third.rejects
    assert {r["captured_at"] for r in third.rows} == {ms(T0.replace(minute=1)), ms(T0.replace(minute=5)),
                                                      ms(T0.replace(hour=15))}
    # A renamed file is the same image: known by its content, never stored twice.
    os.rename(root / "0.jpg", root / "renamed.jpg")
    fourth, _ = pull(root, WEST, layout, known)
    assert fourth.rows == [] and fourth.stats["content_reads"] == 1 and fourth.stats["known_skipped"] == 8


def test_missing_folder_is_a_clear_error(tmp_path, layout):
    with pytest.raises(FolderMissingError, match="does not exist"):
        list_folder(tmp_path / "nope")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(FolderMissingError, match="GEO_ASSETS_FOLDER"):
        pull_folder_tile(tmp_path / "file.jpg", WEST, layout, tiles=TILES, known_ids=set(), known_sha256=set(), max_new=5)


def test_lund_exif_positions_times_and_sequence():
    """The real drive's headers: GPS from the GPS IFD, time and sequence from the mapillary_tools
    JSON its phone app wrote into ImageDescription (no DateTimeOriginal in these files)."""
    from geo_assets.folder.scan import read_header

    if not LUND.is_dir():
        pytest.skip(f"real data not present at {LUND}")
    photos = list_folder(LUND).photos
    metas = [read_header(p) for p in photos]
    assert len(metas) == 29
    assert all(55.698 < m.lat < 55.700 and 13.194 < m.lon < 13.196 and m.position_from == "exif" for m in metas)
    assert {m.sequence_id for m in metas} == {"0F3F9BEF-DC5B-4704-9435-C18EC44702C9"}
    times = [m.captured_at for m in metas]
    assert times == sorted(times) and times[0] == ms(datetime(2014, 6, 7, 10, 24, 5, 656000, tzinfo=timezone.utc))


def _png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(99).integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def test_split_shortfall_names_what_a_one_sequence_folder_lacks():
    import numpy as np

    from geo_assets.model.report import no_test_warning
    from geo_assets.model.splits import split_shortfall

    groups = ["seq:a"] * 5
    error, warning = split_shortfall(np.array(["train"] * 5), groups, "sequence")
    assert error is None and "no test images" in warning and "5 images in 1 sequence," in warning
    error, warning = split_shortfall(np.array(["test"] * 5), groups, "sequence")
    assert warning is None and "no training images" in error and "5 in test (1 sequence)" in error
    assert split_shortfall(np.array(["train", "validation", "test"]), ["a", "b", "c"], "sequence") == (None, None)
    assert no_test_warning([{"n": 0, "n_train": 26, "protocol": "sequence"}]).startswith("**No test images.**")
    assert no_test_warning([{"n": 0}, {"n": 3}]) is None and no_test_warning([]) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_unreadable_photo_is_retried_next_pull_not_rejected(tmp_path, layout):
    root = tmp_path / "photos"
    root.mkdir()
    (root / "a.jpg").write_bytes(jpeg(1, 55.70, 13.19, T0))
    (root / "a.jpg").chmod(0)
    first, known = pull(root, WEST, layout)
    assert first.rows == [] and first.rejects == [] and first.stats["unreadable"] == 1
    (root / "a.jpg").chmod(0o644)  # mode changes leave size and mtime alone: the header must be asked again
    second, _ = pull(root, WEST, layout, known)
    assert len(second.rows) == 1 and second.stats["header_reads"] == 1
