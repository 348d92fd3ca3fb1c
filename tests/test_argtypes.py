"""snncc.argtypes (argparse value types) and snncc.errors.one_line (one-line messages)."""
import argparse

import pytest

from snncc.argtypes import (choices_list, floats, nonnegative_int, positive_floats, positive_int, positive_int_or_auto,
                            positive_ints, positive_ints_or_auto)
from snncc.errors import SnnccError, one_line


def test_positive_int():
    assert positive_int("7") == 7
    for bad, words in (("0", "got 0"), ("-3", "got -3"), ("2.5", "'2.5'"), ("x", "'x'")):
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            positive_int(bad)


def test_nonnegative_int():
    assert nonnegative_int("0") == 0 and nonnegative_int("12") == 12
    with pytest.raises(argparse.ArgumentTypeError, match="got -1"):
        nonnegative_int("-1")


def test_positive_floats():
    assert positive_floats("4") == [4.0] and positive_floats("2, 0.5") == [2.0, 0.5] and positive_floats("none") == []
    for bad in ("0", "-1", "2,0", "inf", "nan", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="positive numbers"):
            positive_floats(bad)


def test_positive_ints():
    assert positive_ints("32") == [32] and positive_ints("32, 64") == [32, 64] and positive_ints("none") == []
    for bad in ("0", "-1", "32,0", "2.5", "inf", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integers"):
            positive_ints(bad)


def test_ints_or_auto():
    assert positive_int_or_auto("auto") == "auto" and positive_int_or_auto("12") == 12
    for bad in ("0", "-3", "2.5", "Auto", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integer or auto"):
            positive_int_or_auto(bad)
    assert positive_ints_or_auto("auto") == ["auto"] and positive_ints_or_auto("32,auto,64") == ["auto", 32, 64]
    assert positive_ints_or_auto("auto,auto") == ["auto"] and positive_ints_or_auto("16") == [16]
    assert positive_ints_or_auto("none") == []
    for bad in ("auto,0", "auto,x", "0"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integers"):
            positive_ints_or_auto(bad)


def test_floats_and_choices_list():
    assert floats("0.5, 1,2e-1") == [0.5, 1.0, 0.2]
    with pytest.raises(argparse.ArgumentTypeError):
        floats("a,b")
    parse = choices_list(("ort", "reference"))
    assert parse("ort,reference") == ["ort", "reference"] and parse("none") == []
    for bad in ("bogus", "ort,bogus", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="ort, reference"):
            parse(bad)


def test_one_line_joins_lines_and_cuts_at_a_word():
    e = ValueError("first line\n  node: name: x\n\tOpType: Flatten")
    assert one_line(e) == "first line node: name: x OpType: Flatten"
    long = ValueError("word " * 100)
    s = one_line(long, 42)
    assert len(s) <= 46 and s.endswith(" ...") and not s[:-4].endswith(" wor")
    assert one_line(KeyError()) == "KeyError" and one_line("") == ""
    assert str(SnnccError("problem", "fix it")) == "problem (fix: fix it)"
