import pytest

from seqpar.tasks.math import as_number, equivalent


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("18", "18.0"),
        ("1000", "1,000"),
        ("18", "\\$18"),
        ("\\frac{1}{2}", "0.5"),
        ("\\frac{1}{2}", "1/2"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
        ("3", "3 \\text{ apples}"),
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"),
    ],
)
def test_equivalent_answers(a, b):
    assert equivalent(a, b)


@pytest.mark.parametrize(
    ("a", "b"), [("3", "4"), ("\\frac{1}{2}", "0.6"), ("(1,2)", "(2,1)"), ("5", "")]
)
def test_different_answers(a, b):
    assert not equivalent(a, b)


def test_as_number():
    assert as_number("1,234") == 1234.0
    assert as_number("$-7.5$") == -7.5
    assert as_number("50\\%") == 50.0
    assert as_number("\\frac{1}{2}") is None
