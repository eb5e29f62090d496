from __future__ import annotations

import math

import pytest

from models.pair_signals import (
    FEATURE_NAMES,
    FEATURE_NAMES_V3,
    MODEL_NUMBERS_CHARS,
    PRICE_LOG_RATIO_CAP,
    PairSignals,
    f_beta,
    identifier_key,
    identifier_similarity,
    is_identifier,
    model_numbers,
    pair_signals,
    price_of,
    tokenize,
)

COLOURED = {"title": "Sony WH-1000XM5 Headphones - Black"}
COLOURLESS = {"title": "SONY WH-1000XM5"}
OFFER = {"title": "sony wh-1000xm5 black"}
LONG_TITLE = {"title": "Sony WH-1000XM5 Wireless Noise Cancelling Headphones Black"}


def _ids(left: str, right: str) -> PairSignals:
    return pair_signals({"title": left}, {"title": right})


# --------------------------------------------------------------------------- tokens and identifiers


def test_tokenize_glues_inner_punctuation_and_keeps_decimals() -> None:
    assert tokenize("Sony WH-1000XM5 Headphones - Black") == ["sony", "wh1000xm5", "headphones", "black"]
    assert tokenize("2.4GHz router, 5.1 sound") == ["2.4ghz", "router", "5.1", "sound"]
    assert tokenize("Tissot T120.407.17.041.00") == ["tissot", "t1204071704100"]
    assert tokenize("Women's (USB/Type-C)") == ["womens", "usb", "typec"]
    assert tokenize("ＷＨ－１０００ＸＭ５") == ["wh1000xm5"]  # NFKC, as embed_text


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("wh1000xm5", True),
        ("73101163", True),
        ("pslx350h", True),
        ("128gb", False),  # a measure
        ("2.4ghz", False),
        ("4k", False),
        ("3user", False),  # a count of something
        ("2007", False),  # a year: the edition of many products
        ("cs3", False),  # too short to name one model
        ("123", False),
        ("black", False),
    ],
)
def test_is_identifier(token: str, expected: bool) -> None:
    assert is_identifier(token) is expected


@pytest.mark.parametrize("spelling", ["WH-1000XM5", "wh1000xm5", "WH 1000XM5", "wh-1000-xm5", "WH 1000 XM5"])
def test_identifier_spellings_compare_equal(spelling: str) -> None:
    s = _ids(f"Sony {spelling} headphones", "SONY WH-1000XM5 headphones")
    assert s.identifier == "match" and s.identifier_score == 1.0
    assert s.left_identifiers == ("wh1000xm5",)


def test_neighbouring_models_conflict() -> None:
    s = _ids("sony wh-1000xm4", "sony wh-1000xm5")
    assert s.identifier == "conflict" and s.identifier_score == 0.0


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("wh-1000mx5", "WH-1000XM5"),  # swapped letters
        ("wh-1000xxm5", "WH-1000XM5"),  # a letter typed twice
        ("wh-100xm5b", "wh-100xm5"),  # a colour suffix
    ],
)
def test_typos_and_suffixes_still_agree(a: str, b: str) -> None:
    assert _ids(f"sony {a}", f"sony {b}").identifier == "match"


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("wh1000xm5", "wh1000xm5", 1.0),
        ("un55f6300", "un55f6300afxza", 0.9),  # a region code added
        ("athm50x", "athm50xwh", 0.9),  # a letter suffix extended
        ("csr9100", "r9100", 0.85),  # a series prefix
        ("wh1000mx5", "wh1000xm5", 0.8),  # a transposition with a letter
        ("wh1000xm4", "wh1000xm5", 0.0),  # another digit: another model
        ("wh100xm5", "wh1000xm5", 0.0),  # a digit dropped
        ("cc9011110ww", "cc9011101ww", 0.0),  # two digits swapped
        ("kdl46w4100", "kdl46s4100", 0.0),  # a changed letter names another model
        ("f360b", "f360w", 0.0),  # two different variants
        ("9100", "csr9100", 0.0),  # a bare short number behind a prefix is too common
    ],
)
def test_identifier_similarity_grades(a: str, b: str, expected: float) -> None:
    assert identifier_similarity(a, b) == expected
    assert identifier_similarity(b, a) == expected


def test_identifiers_absent_unless_both_sides_have_them() -> None:
    assert _ids("sony headphones black", "sony wh-1000xm5").identifier == "absent"
    assert _ids("sony headphones", "sony headphones").identifier == "absent"


def test_identifier_attribute_counts() -> None:
    offer = {"title": "Sony noise cancelling headphones", "attributes": {"MPN": "WH-1000XM5"}}
    s = pair_signals(offer, COLOURLESS)
    assert s.identifier == "match" and s.left_identifiers == ("wh1000xm5",)


@pytest.mark.parametrize(
    ("key", "counts"),
    [
        ("Item model number", True),
        ("Model #", True),
        ("manufacturer_part_number", True),
        ("Mfr. Part Number", True),
        ("GTIN-13", False),  # a barcode: the other shop lists the part number instead
        ("modelno", True),
        ("ASIN", False),  # one shop's number: another shop never has it
        ("SKU", False),
        ("Colour", False),
    ],
)
def test_attribute_keys_that_hold_identifiers(key: str, counts: bool) -> None:
    assert identifier_key(key) is counts
    offer = {"title": "Sony noise cancelling headphones", "attributes": {key: "WH-1000XM5"}}
    assert (pair_signals(offer, COLOURLESS).identifier == "match") is counts


# --------------------------------------------------------------------------- coverage


def test_subset_is_not_a_full_match_and_the_colour_counts() -> None:
    coloured, colourless = pair_signals(OFFER, COLOURED), pair_signals(OFFER, COLOURLESS)
    # token_set_ratio calls both 1.0; the coverages see what each side lacks.
    assert colourless.token_f1 < 1.0 and coloured.token_f1 < 1.0
    assert coloured.left_coverage == 1.0 and colourless.left_coverage < 1.0
    assert coloured.token_f1 > colourless.token_f1
    assert coloured.f_beta(2.0) > colourless.f_beta(2.0)


def test_same_tokens_in_any_order_and_case_cover_fully() -> None:
    s = _ids("Black SONY headphones WH-1000XM5", "sony wh1000xm5 headphones black")
    assert s.left_coverage == s.right_coverage == s.token_f1 == 1.0


def test_one_word_offer_does_not_score_high_against_a_long_title() -> None:
    s = pair_signals({"title": "sony"}, LONG_TITLE)
    assert s.left_coverage == 1.0
    assert s.right_coverage < 0.2
    assert s.token_f1 < 0.3 and s.f_beta(2.0) < 0.5


def test_typo_in_a_word_is_forgiven_but_a_different_word_is_not() -> None:
    typo = _ids("panasonic micrwave oven", "panasonic microwave oven")
    other = _ids("panasonic toaster oven", "panasonic microwave oven")
    assert typo.token_f1 > 0.9
    assert other.token_f1 < typo.token_f1 - 0.2


def test_numbers_and_measures_must_be_equal() -> None:
    assert _ids("iphone 15 pro 128gb", "iphone 15 pro 256gb").token_f1 < 0.8
    assert _ids("iphone 15 pro 128 gb", "iphone 15 pro 128gb").token_f1 == 1.0  # fragments joined


def test_f_beta_weighs_the_left_side_more_when_beta_exceeds_one() -> None:
    assert f_beta(1.0, 0.5, 2.0) > f_beta(0.5, 1.0, 2.0)
    assert f_beta(0.6, 0.6, 2.0) == pytest.approx(0.6)
    assert f_beta(0.0, 1.0) == 0.0
    assert f_beta(1.0, 0.5) == pytest.approx(2 * 0.5 / 1.5)


def test_empty_title_covers_nothing() -> None:
    s = pair_signals({"title": ""}, COLOURED)
    assert s.left_coverage == s.right_coverage == s.token_f1 == 0.0


# --------------------------------------------------------------------------- brand and price


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ({"brand": "SONY"}, {"brand": "sony"}, "match"),
        ({"brand": "Sony"}, {"brand": "Sony Electronics"}, "match"),
        ({"brand": "Sony"}, {"manufacturer": "sony"}, "match"),
        ({"brand": "Sony"}, {"brand": "Bose"}, "conflict"),
        ({"brand": "Sony"}, {}, "match"),  # the right title "SONY WH-1000XM5" names it
        ({"brand": "Bose"}, {}, "absent"),  # a title without the brand is no evidence
        ({}, {}, "absent"),
    ],
)
def test_brand_agreement(left: dict, right: dict, expected: str) -> None:
    s = pair_signals({"title": "wh-1000xm5 headphones", **left}, {**COLOURLESS, **right})
    assert s.brand == expected


def test_price_log_ratio() -> None:
    s = pair_signals({**OFFER, "price": 100.0}, {**COLOURED, "price": "$200.00"})
    assert s.price_log_ratio == pytest.approx(math.log(2))
    assert pair_signals(OFFER, {**COLOURED, "price": 10}).price_log_ratio is None
    differ = pair_signals({**OFFER, "price": 1, "currency": "EUR"}, {**COLOURED, "price": 1, "currency": "usd"})
    assert differ.price_log_ratio is None
    same = pair_signals({**OFFER, "price": 5, "currency": "EUR"}, {**COLOURED, "price": 5, "currency": "eur"})
    assert same.price_log_ratio == 0.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(399.0, 399.0), ("399.0", 399.0), ("$1,299.00", 1299.0), ("1.299,00", 1299.0), ("1,299", 1299.0)],
)
def test_price_of_reads_numbers_and_text(value: object, expected: float) -> None:
    assert price_of({"price": value}) == pytest.approx(expected)


@pytest.mark.parametrize("value", [None, "", "n/a", 0, -3, "-3", float("nan"), True])
def test_price_of_refuses_what_is_not_a_positive_price(value: object) -> None:
    assert price_of({"price": value}) is None


# --------------------------------------------------------------------------- features


def test_features_follow_feature_names() -> None:
    s = pair_signals({**OFFER, "brand": "Sony", "price": 1.0}, {**COLOURED, "brand": "Bose", "price": 1000.0})
    features = dict(zip(FEATURE_NAMES, s.as_features(), strict=True))
    assert len(s.as_features()) == len(FEATURE_NAMES)
    assert features["identifier_match"] == 1.0 and features["identifier_conflict"] == 0.0
    assert features["identifier_absent"] == 0.0 and features["identifier_score"] == 1.0
    assert features["left_coverage"] == s.left_coverage and features["token_f1"] == s.token_f1
    assert features["brand_conflict"] == 1.0 and features["brand_match"] == features["brand_absent"] == 0.0
    assert features["price_log_ratio"] == PRICE_LOG_RATIO_CAP and features["price_missing"] == 0.0
    missing = dict(zip(FEATURE_NAMES, pair_signals(OFFER, COLOURED).as_features(), strict=True))
    assert missing["price_log_ratio"] == 0.0 and missing["price_missing"] == 1.0


def test_name_field_is_a_title() -> None:
    s = pair_signals({"name": "sony turntable pslx350h"}, {"title": "Sony PS-LX350H belt drive turntable"})
    assert s.identifier == "match" and s.left_coverage == 1.0


@pytest.mark.parametrize("token", ["80211n", "usb3", "ddr4", "pc310600", "h264", "sata3", "cat6e", "hdmi2"])
def test_standards_are_not_model_numbers(token: str) -> None:
    assert not is_identifier(token)


def test_a_shared_standard_does_not_make_two_routers_one_product() -> None:
    s = pair_signals({"title": "netgear wnr834b 802.11n router"}, {"title": "linksys wrt160n 802.11n router"})
    assert s.identifier == "conflict"


def test_a_shared_code_does_not_outweigh_a_sibling_model() -> None:
    s = pair_signals({"title": "sony wh-1000xm4 case 1234567"}, {"title": "Sony WH-1000XM5 case 1234567"})
    assert s.identifier == "conflict"
    same = pair_signals({"title": "sony wh-1000xm5 case 1234567"}, {"title": "Sony WH-1000XM5 case 1234567"})
    assert same.identifier == "match"
    hub = pair_signals({"title": "belkin usb3 hub f4u058"}, {"title": "belkin usb3 hub f4u059"})
    assert hub.identifier == "conflict"


def test_model_numbers_keeps_only_identifier_attributes_within_the_column() -> None:
    attrs = {
        "MPN": " WH-1000XM5 ",
        "Colour": "black",
        "UPC": "027242923232",
        "ASIN": "B09XS7JWHH",
        "model": "",
        "Part No": "1000XM5-B",
    }
    assert model_numbers(attrs) == "WH-1000XM5 1000XM5-B"
    assert model_numbers({"Colour": "black"}) is None and model_numbers(None) is None
    long = model_numbers({"Part Number": "X" * 1000})
    assert long is not None and len(long) == MODEL_NUMBERS_CHARS


def test_a_model_number_in_one_sides_attributes_confirms_but_never_contradicts() -> None:
    offer = {"title": "Samsung Galaxy S21 Ultra 128GB", "attributes": {"Manufacturer Part Number": "SM-G998U"}}
    # The other title carries it (with a region suffix): a match. It names another code (a
    # processor): not a conflict by itself.
    assert pair_signals(offer, {"title": "Samsung Galaxy S21 Ultra SM-G998U/DS 128GB"}).identifier == "match"
    assert pair_signals(offer, {"title": "Samsung Galaxy S21 Ultra i56300u"}).identifier == "absent"
    # Both sides list model numbers: they can disagree.
    listed = {"title": "Samsung Galaxy S21 Ultra", "attributes": {"Model": "SM-G991U"}}
    assert pair_signals(offer, listed).identifier == "conflict"
    # Two titles still contradict each other as before.
    assert pair_signals({"title": "Sony WH-1000XM4"}, {"title": "Sony WH-1000XM5"}).identifier == "conflict"


@pytest.mark.parametrize(
    ("left", "right", "agreement"),
    [
        ("Alta 20in Luggage - Red", "Alta 20in Luggage - Black", "conflict"),
        ("ChefWave Espresso Machine (Red)", "ChefWave Espresso Machine (Black) with cups", "conflict"),
        ("Fountain - Black, White Finish", "Fountain white", "match"),  # one shared colour is enough
        ("Sony headphones grey", "Sony headphones Gray", "match"),  # one colour, two spellings
        ("Sony WH-1000XM5 black", "SONY WH-1000XM5", "absent"),  # a title without a colour says nothing
        ("Glade Clean Linen", "Glade Lavender & Peach Blossom", "absent"),
    ],
)
def test_colour_agreement(left: str, right: str, agreement: str) -> None:
    assert pair_signals({"title": left}, {"title": right}).colour == agreement
    assert pair_signals({"title": right}, {"title": left}).colour == agreement


def test_third_feature_set_adds_the_colour_one_hot() -> None:
    signals = pair_signals({"title": "Alta Luggage Red"}, {"title": "Alta Luggage Blue"})
    assert signals.as_features_v3() == [*signals.as_features_v2(), 0.0, 1.0, 0.0]
    assert len(signals.as_features_v3()) == len(FEATURE_NAMES_V3)
