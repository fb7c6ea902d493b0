"""Figures quoted in a notebook's prose, for the tests that check each one is in a results file
(notebooks 05 and 06)."""
import re

FIGURE = re.compile(r"(?<![\w.-])(\d+\.\d+(?:e-\d+)?|\d+)"
                    r"(?= ?(?:%|points|s\b|px|photos|epochs|steps|breeds))")


def quoted(prose):
    """The figures a prose cell quotes: numbers followed by %, points, s, px, photos, epochs, steps or breeds,
    and every decimal number or rate written e.g. 1.2e-03."""
    found = set(FIGURE.findall(prose))
    found |= set(re.findall(r"(?<![\w.])\d+\.\d+(?:e-\d+)?(?![\w.])", prose))
    return found
