"""The form parser reads what `parse_qsl` reads, in time that grows with the text only."""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import forms

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "300"))


def reference(text: str) -> list[tuple[str, str]]:
    return parse_qsl(text, keep_blank_values=True, errors="strict",
                     max_num_fields=forms.MAX_FIELDS)


def pairs(text: str, *, lenient: bool = False) -> list[tuple[str, str]]:
    return [(name, value) for name, values in forms.parse(text, lenient=lenient).items()
            for value in values]


unicode = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.tuples(unicode, unicode), max_size=12))
def test_whatever_urlencode_writes_reads_back_as_parse_qsl_reads_it(
        fields: list[tuple[str, str]]) -> None:
    text = urlencode(fields)
    # Grouped by name (the signature sorts names), each name's values in order.
    expected: dict[str, list[str]] = {}
    for name, value in reference(text):
        expected.setdefault(name, []).append(value)
    assert forms.parse(text) == expected


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(alphabet="ab=&+%_\r\n 3DéF0c~;\\", max_size=60))
def test_raw_text_leniently_reads_as_parse_qsl_reads_it(text: str) -> None:
    try:
        want = reference(text)
    except UnicodeDecodeError:
        with pytest.raises(forms.MalformedForm):
            pairs(text, lenient=True)
        return
    assert sorted(pairs(text, lenient=True)) == sorted(want)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(alphabet="ab=&+%_\r\n 3DéF0c~;\\", max_size=60))
def test_raw_text_reads_as_parse_qsl_reads_it_or_is_refused(text: str) -> None:
    try:
        got = pairs(text)
    except forms.MalformedForm:
        return  # a % without two hex digits, or escapes of bytes that are not UTF-8
    want = reference(text)
    assert sorted(got) == sorted(want)


@pytest.mark.parametrize("text, reason", [
    ("Body=%2%2%2", "a % not followed by two hex digits"),
    ("Body=100%", "a % not followed by two hex digits"),
    ("Body=%zz", "a % not followed by two hex digits"),
    ("Body=%C3%28", "text that is not UTF-8"),
    ("Body=%FF", "text that is not UTF-8"),
    ("a=1" + "&a=1" * 256, "more than 256 fields"),
])
def test_what_twilio_never_sends_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(forms.MalformedForm) as err:
        forms.parse(text)
    assert str(err.value) == reason


def test_known_answers() -> None:
    assert forms.parse("To=%2B15005550006&Body=caf%C3%A9+%3D+%2B%25&Body=&e&=x&k=a=b") == {
        "To": ["+15005550006"], "Body": ["café = +%", ""], "e": [""], "": ["x"],
        "k": ["a=b"]}
    assert forms.parse("a=1" + "&a=1" * 255) == {"a": ["1"] * 256}


@pytest.mark.parametrize("text", ["Message=Save+50%", "Message=100%+off&x=%zz", "a=%", "%=%2"])
def test_a_person_s_query_string_keeps_a_bare_percent_as_parse_qsl_does(text: str) -> None:
    """Twimlet URLs are written by people; twimlets.com (PHP) read `50%` as `50%`."""
    assert sorted(pairs(text, lenient=True)) == sorted(reference(text))
