"""OCR text cleaning (seed 3.4.1.2) and the offline gazetteer: pure functions."""

import random

import pytest

from geo_assets.preprocess.gazetteer import place_key, uk_gazetteer
from geo_assets.preprocess.text_cleaning import (
    clean_ocr_text, contains_coordinates, find_place_names, is_road_number, strip_overlays,
)

SEED_EXAMPLE = ["St Ninian $", "High School", "GARMIN", "20/12/2021 09:08:49 AM", "55.79857 -4.30273 13 MPH",
                "'cotncaouy", "7"]


def test_seed_example_gives_exactly_st_ninian_high_school():
    assert clean_ocr_text(SEED_EXAMPLE) == "St Ninian High School"


def test_seed_overlay_line_garbage_is_dropped():
    assert clean_ocr_text(["SARMIN 20/12/2021 09:08:49 AM 55-1355($2.530/23)"]) == ""
    assert clean_ocr_text(["GARMIN 20/12/2021 09:08:49 AM 55-1355($2.530/23)"]) == ""


def test_seed_figure_9_keeps_places_and_road_numbers():
    cleaned = clean_ocr_text(["uk motorway", "Leicester", "Peterborough", "447", "Gedney", "B1167", "Hill", "B1167"])
    assert cleaned == "uk motorway Leicester Peterborough Gedney B1167 Hill B1167"


@pytest.mark.parametrize("overlay", [
    "20/12/2021", "2021-12-20", "20.12.2021", "20-12-21", "2021/12/20", "20 Dec 2021", "Dec 20, 2021",
    "20th December 2021", "20211220_090849", "09:08:49", "09:08:49 AM", "9:08 pm", "09.08.49", "14:22 BST",
    "13 MPH", "13MPH", "40km/h", "40 KM/H", "60 kph", "Speed: 34", "GARMIN", "Garmin Dash Cam 67W", "NEXTBASE",
    "VIOFO A119", "VIOFO A119 V3", "Garmin 67W", "BlackVue", "THINKWARE", "70mai", "@johnsmith", "© mapillary", "mapillary", "www.example.com",
    "KartaView", "REC", "GPS", "AB12 CDE", "ALT: 120", "CH1", "NEXTBASE2023-05-0114:22", "GARMIN20/12/2021",
    "VIOFO2019/01/0610:12:45",
])
def test_overlays_are_dropped(overlay):
    assert clean_ocr_text([overlay]) == ""
    assert clean_ocr_text([f"High Street {overlay}"]) == "High Street"


@pytest.mark.parametrize("junk", ["'cotncaouy", "7", "$", "xkcdqz", "|||", "a", "Il1", "%&*", "1234", "--", "ZZZZ",
                                  "qwrtp", "rnm", "...", "oo"])
def test_ocr_noise_is_dropped(junk):
    assert clean_ocr_text([junk]) == ""


@pytest.mark.parametrize("text, expected", [
    ("High Street", "High Street"),
    ("Station Road", "Station Road"),
    ("Church Lane", "Church Lane"),
    ("Kings Arms Inn", "Kings Arms Inn"),
    ("Royal Hotel", "Royal Hotel"),
    ("Bridge St", "Bridge St"),
    ("A57", "A57"),
    ("m6", "M6"),
    ("A1(M) North", "A1(M) North"),
    ("B1167", "B1167"),
    ("Manchester 12", "Manchester"),
    ("Welcome to Milton Keynes", "Welcome to Milton Keynes"),
    ("Newcastle upon Tyne", "Newcastle upon Tyne"),
    ("Bury St Edmunds", "Bury St Edmunds"),
    ("Stoke-on-Trent", "Stoke-on-Trent"),
    ("eurospar", "eurospar"),
    ("TESCO Express", "TESCO Express"),
    ("Leicestcr", "Leicester"),  # OCR error fixed by the fuzzy gazetteer
    ("Sheffeld 23", "Sheffield"),
    ("Schoo1 Lane", "School Lane"),  # digit read for a letter
    ("0xford", "Oxford"),
    ("Ninian", ""),  # an unknown name alone is not kept
    ("St Ninian", "St Ninian"),  # ... but is next to a sign word
])
def test_place_and_sign_words_are_kept(text, expected):
    assert clean_ocr_text([text]) == expected


def test_repeated_reads_collapse_and_order_is_kept():
    assert clean_ocr_text(["York", "York", "A64", "Leeds"]) == "York A64 Leeds"


def test_empty_and_non_string_input():
    assert clean_ocr_text([]) == ""
    assert clean_ocr_text(["", "   ", None]) == ""


def test_road_numbers():
    for good in ["A57", "M6", "B1167", "A1(M)", "M25", "a3"]:
        assert is_road_number(good)
    for bad in ["A12345", "C57", "55", "M", "AB12"]:
        assert not is_road_number(bad)


# --------------------------------------------------------------------------- coordinates


def _dms(v):
    a = abs(v)
    d = int(a)
    m = int((a - d) * 60)
    return d, m, (a - d - m / 60) * 3600


def coordinate_formats(lat: float, lon: float) -> list[str]:
    """Every common way a camera, a phone or a person writes a position."""
    ns, ew = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
    ld, lm, ls = _dms(lat)
    od, om, os_ = _dms(lon)
    alat, alon = abs(lat), abs(lon)
    lmd, omd = (alat - ld) * 60, (alon - od) * 60
    return [
        f"{lat:.5f} {lon:.5f}", f"{lat:.5f},{lon:.5f}", f"{lat:.6f}, {lon:.6f}", f"{lat:.4f};{lon:.4f}",
        f"({lat:.5f}, {lon:.5f})", f"{lat:.5f}/{lon:.5f}", f"{lat:.5f} , {lon:.5f}", f"{lat:.5f}{lon:+.5f}",
        f"{lat:.5f}".replace(".", ",") + " " + f"{lon:.5f}".replace(".", ","),
        f"{ns}{ld}°{lm}'{ls:.1f}\" {ew}{od}°{om:02d}'{os_:04.1f}\"",
        f"{ld}°{lm}'{ls:.1f}\"{ns} {od}°{om}'{os_:.1f}\"{ew}",
        f"{ld}° {lm}′ {ls:.1f}″ {ns}, {od}° {om}′ {os_:.1f}″ {ew}",
        f"{ns}{ld} {lmd:.3f} {ew}{od:03d} {omd:.3f}", f"{ns} {ld}°{lmd:.3f}' {ew} {od}°{omd:.3f}'",
        f"{ns}{alat:.5f} {ew}{alon:.5f}", f"{alat:.5f}{ns} {alon:.5f}{ew}", f"{alat:.5f} {ns}, {alon:.5f} {ew}",
        f"Lat: {lat:.5f} Lon: {lon:.5f}", f"LAT {lat:.5f} LNG {lon:.5f}", f"GPS: {lat:.5f}, {lon:.5f}",
        f"lat={lat:.4f}&lon={lon:.4f}", f"{lat:.5f}° {lon:.5f}°",
        f"{ld} {lm} {ls:.1f} {ns} {od} {om} {os_:.1f} {ew}", f"{lat:.5f}", f"{lon:.5f}",
        f"{ld}°{lm}'{ns} {od}°{om}'{ew}",
    ]


def test_the_seed_coordinate_formats_are_detected():
    for text in ["55.79857 -4.30273", "55.79857,-4.30273", "N55°47'54.9\" W4°18'09.8\"", "55.79857 -4.30273 13 MPH"]:
        assert contains_coordinates(text), text
        assert clean_ocr_text([text]) == ""


def test_random_coordinates_in_every_format_are_always_removed():
    rng = random.Random(1234)
    checked = 0
    for _ in range(150):
        if rng.random() < 0.8:  # the UK, where the images are
            lat, lon = rng.uniform(49.8, 60.9), rng.uniform(-8.2, 1.8)
        else:  # anywhere
            lat, lon = rng.uniform(-89.9, 89.9), rng.uniform(-179.9, 179.9)
        for text in coordinate_formats(lat, lon):
            assert contains_coordinates(text), text
            for cleaned in (clean_ocr_text([text]), clean_ocr_text(["High Street", text, "Leeds"]),
                            clean_ocr_text([f"GARMIN {text} 13 MPH High Street"])):
                assert not any(ch.isdigit() for ch in cleaned), (text, cleaned)
                assert not contains_coordinates(cleaned), (text, cleaned)
            assert clean_ocr_text(["High Street", text, "Leeds"]) == "High Street Leeds", text
            assert clean_ocr_text([f"High Street {text} 13 MPH"]) == "High Street", text
            checked += 1
    assert checked > 3000


def test_split_coordinates_across_ocr_items_do_not_survive():
    # OCR can split one overlay line into several items anywhere.
    rng = random.Random(7)
    for _ in range(200):
        text = rng.choice(coordinate_formats(rng.uniform(50, 59), rng.uniform(-6, 1.5)))
        cut = rng.randrange(1, len(text))
        cleaned = clean_ocr_text(["Church Road", text[:cut], text[cut:]])
        assert not any(ch.isdigit() for ch in cleaned), (text, cleaned)
        assert not contains_coordinates(cleaned)


@pytest.mark.parametrize("text", [
    "A57 M6 B1167", "Manchester 12", "High Street", "St Ninian High School", "Open 9am to 5pm", "12°C",
    "Tel 01234 567890", "a street scene with a picket fence, a church and a valley", "1.5 miles", "Est 1875", "",
])
def test_no_false_coordinate_alarm_on_ordinary_text(text):
    assert not contains_coordinates(text)


def test_strip_overlays_separates_segments():
    assert "55.79857" not in strip_overlays("High School 55.79857 -4.30273")
    assert "|" in strip_overlays("High School 13 MPH")


# --------------------------------------------------------------------------- gazetteer


def test_gazetteer_holds_gb_places_and_admin_names():
    gaz = uk_gazetteer()
    assert len(gaz) > 5000
    for name in ["London", "Glasgow", "Leicester", "Milton Keynes", "Bury St Edmunds", "Yorkshire", "Cornwall",
                 "Gwynedd", "Northern Ireland", "Stoke-on-Trent"]:
        assert name in gaz, name
    assert gaz.lookup("glasgow").lat == pytest.approx(55.86, abs=0.1)


def test_gazetteer_fuzzy_matches_ocr_errors_but_not_sign_words():
    gaz = uk_gazetteer()
    assert gaz.fuzzy("Glasgw") == "Glasgow"
    assert gaz.fuzzy("Peterborougn") == "Peterborough"
    assert gaz.fuzzy("Station") is None
    assert gaz.fuzzy("School") is None
    assert gaz.fuzzy("Xyzzyq") is None


def test_place_key_normalises():
    assert place_key("Saint Albans") == place_key("St. Albans") == "st albans"
    assert place_key("Stoke-on-Trent") == "stoke on trent"


def test_find_place_names():
    assert find_place_names("St Ninian High School") == []
    assert find_place_names("motorway Leicester Peterborough Gedney B1167 Hill") == ["Leicester", "Peterborough"]
    assert find_place_names("Welcome to Milton Keynes, Milton Keynes") == ["Milton Keynes"]
    assert find_place_names("High Street Bridge Road") == []  # everyday words that are also places
    assert find_place_names("a street scene with a church") == []
    assert find_place_names("Glasgw") == ["Glasgow"]
    assert find_place_names("") == []


# --------------------------------------------------------------------------- run-on OCR output


@pytest.mark.parametrize("token, words", [
    ("EythornePostOffice", ["Eythorne", "Post", "Office"]),
    ("A29Folkestone", ["A29", "Folkestone"]),
    ("M25Wallington", ["M25", "Wallington"]),
    ("Sutton31", ["Sutton", "31"]),
    ("HARROWONTHEHILLKEBABHOUSE", ["HARROW", "ON", "THE", "HILL", "KEBAB", "HOUSE"]),
    ("WOODGREENBUTCHERS", ["WOOD", "GREEN", "BUTCHERS"]),
    ("HIGHStreet", ["HIGH", "Street"]),
    ("A1(M)", ["A1(M)"]),
    ("McDonalds", ["McDonalds"]),  # a known word stays whole
    ("Schoo1", ["Schoo1"]),  # a misread letter, fixed later by the cleaner
    ("Pleasedrivecarefully", ["Please", "drive", "carefully"]),
    ("PORTREECO-OP", ["PORTREE", "CO-OP"]),
    ("pixeltrekker", ["pixeltrekker"]),  # lower-case run-ons (user names) are not split
])
def test_split_run_on_words(token, words):
    from geo_assets.preprocess.text_cleaning import split_run_on

    assert split_run_on(token) == words


def test_rapidocr_style_run_on_output_is_cleaned():
    # What RapidOCR read on a synthetic dashcam frame (spaces dropped, overlay run together).
    ocr = ["EythornePostOffice", "A29Folkestone", "TRANSCEND", "02/01/2019 09:46:44 AM", "51.19377 1.26360", "66MPH",
           "pixeltrekker", "57.27902-7.29240", "03/01/201902:21:34 PM", "trail_trekker42"]
    assert clean_ocr_text(ocr) == "Eythorne Post Office A29 Folkestone"
    assert find_place_names(clean_ocr_text(ocr)) == ["Eythorne", "Folkestone"]
