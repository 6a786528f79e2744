"""The one grammar for severities and conditions, used by every command."""

import pytest

from onnx_geom.conditions import condition_name, parse_condition, parse_severities
from onnx_geom.errors import DataError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1-5", [1, 2, 3, 4, 5]),
        ("1,3,5", [1, 3, 5]),
        ("5,1", [1, 5]),
        ("1,3-5", [1, 3, 4, 5]),
        (" 2 , 2 ", [2]),
        ("4-4", [4]),
    ],
)
def test_severities_read_lists_ranges_and_mixes(text, expected):
    assert parse_severities(text) == expected


@pytest.mark.parametrize("text", ["", "a", "1-", "0-3", "6", "1,,2", "3-1", "1.5"])
def test_other_severities_are_one_sentence(text):
    with pytest.raises(DataError, match=r"^severities must") as info:
        parse_severities(text)
    assert str(info.value).count(".") >= 1 and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"), [("fog/3", ("fog", 3)), ("clean", ("clean", 0)), ("clean/0", ("clean", 0))]
)
def test_conditions_round_trip(text, expected):
    assert parse_condition(text) == expected
    assert parse_condition(condition_name(*expected)) == expected


@pytest.mark.parametrize("text", ["fog", "fog/0", "fog/6", "clean/2", "/3", "fog/x"])
def test_bad_conditions_say_how_to_write_one(text):
    with pytest.raises(DataError, match="CORRUPTION/SEVERITY"):
        parse_condition(text)
