"""Quantities in titles and their agreement (models/quantities.py)."""

from __future__ import annotations

import pytest

from models.pair_signals import pair_signals
from models.quantities import quantities, quantity_agreement


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Aquaphor Healing Ointment - 1.75 Ounce (Pack of 6)", {"size": (1.75,), "count": (6.0,)}),
        ("OdoBan 1 Gallon", {"size": (128.0,)}),
        ("Senna Plus 1,000 count", {"count": (1000.0,)}),
        ("Lysol Wipes Flatpack 80 ct. (Pack of 6)", {"count": (6.0, 80.0)}),
        ("2 x 16 oz bottles", {"count": (2.0,), "size": (16.0,)}),
        ("REPTI 18W UVB lamp", {"power": (18.0,)}),
        ('Apple MacBook Pro 13.3" 4GB RAM 500GB SSD', {"length": (337.82,), "storage": (4.0, 500.0)}),
        ("Samsung 1TB SSD", {"storage": (1000.0,)}),
        ("2.5GHz Core i5", {"frequency": (2.5,)}),
    ],
)
def test_quantities_by_family_in_base_units(title: str, expected: dict[str, tuple[float, ...]]) -> None:
    found = quantities(title)
    assert found.keys() == expected.keys()
    for family, values in expected.items():
        assert found[family] == pytest.approx(values)


@pytest.mark.parametrize(
    "title",
    [
        "Samsung Galaxy S20 FE 5G",  # a network, not five grams
        "Tide PODS 3 in 1 Laundry Detergent",  # a product type, not three inches
        "Canon EOS 5D Mark II",
        "Sony WH-1000XM5 headphones",  # a model number, not a quantity
        "1920x1080 monitor",
        "Intel Core i5-3210M",  # a processor model, not 3,210 metres
        "",
    ],
)
def test_what_is_no_quantity(title: str) -> None:
    assert quantities(title) == {}


@pytest.mark.parametrize(
    ("left", "right", "agreement"),
    [
        ("Senna 200 Count Tablets", "Senna-S Tablets 500 Count", "conflict"),
        ("OdoBan Eucalyptus 32 fl oz", "OdoBan Concentrate 1 Gallon", "conflict"),
        ("Zoo Med ReptiSun 25 Watt", "REPTI ZOO 18W UVB lamp", "conflict"),
        ("Aquaphor 1.75 oz. Tube - 2 Pack", "Aquaphor 1.75 Ounce (Pack of 6)", "conflict"),
        ("API Tap Water Conditioner 16 oz", "API Water Conditioner 16-Ounce Bottle", "match"),
        ("Balm 1.75 oz", "Balm 50 g", "match"),  # 50 g = 1.76 oz, within the tolerance
        ("Canopy 10' x 10'", "Canopy 10 FT X 10 FT", "match"),
        ("Premier Protein Shake 4 Ct", "Premier Protein Shake (Pack of 4)", "match"),
        ("Lysol Wipes 80 ct. (Pack of 6)", "Lysol Wipes 80 count", "match"),  # one common value is enough
        ("Sony camera", "Sony camera 16GB", "absent"),
        ("Kingston 16GB USB", "Kingston 2 Pack", "absent"),  # no family on both sides
        # as many values on both sides: each needs a counterpart (the common RAM hid the disk)
        ("MacBook Pro 4GB RAM, 500GB SSD", "MacBook Pro 4GB RAM, 128GB HDD", "conflict"),
        ("MacBook Pro 4GB RAM, 500GB SSD", "MacBook Pro 500GB 4GB", "match"),
        ("MacBook Pro 4GB RAM, 500GB SSD", "MacBook Pro 4GB RAM", "match"),  # one side names fewer
    ],
)
def test_agreement(left: str, right: str, agreement: str) -> None:
    assert quantity_agreement(left, right) == agreement
    assert quantity_agreement(right, left) == agreement


def test_pair_signals_carry_the_quantity_agreement_in_the_second_feature_set() -> None:
    signals = pair_signals({"title": "Senna 200 Count"}, {"name": "Senna 500 Count"})
    assert signals.quantity == "conflict"
    assert signals.as_features_v2() == [*signals.as_features(), 0.0, 1.0, 0.0]
    assert pair_signals({"title": "Senna"}, {"title": "Senna"}).as_features_v2()[-3:] == [0.0, 0.0, 1.0]
