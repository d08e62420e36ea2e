"""A confusables skeleton for user names: Cyrillic and Greek letters that look like Latin ones.

Two accounts `adm2` and `аdm2` (the second with Cyrillic `а`) read the same in every table and
event, so one person could pass for another. User names are unique by `skeleton`: NFKC, case
folding, then each Cyrillic or Greek letter that is drawn like a Latin letter (in either case:
Cyrillic `Н` looks like `H`, so its lower case `н` maps to `h`) replaced by that letter, with
accents kept (`ё` and `ë` meet: the text is decomposed first). The table covers the look-alikes of Unicode's confusables
list (UTS #39) between these three scripts' letters; it is written out here, not loaded from a
package, because the stored keys must not change when a dependency updates (migration 0005
computes them with this function).
"""

from __future__ import annotations

import unicodedata

# lower-case Cyrillic / Greek letter (after casefold) -> the Latin letter it is drawn like
_LOOK_ALIKES = {
    # Cyrillic
    "а": "a",
    "в": "b",  # В
    "г": "r",
    "е": "e",
    "з": "3",
    "і": "i",
    "ј": "j",
    "к": "k",
    "м": "m",  # М
    "н": "h",  # Н
    "о": "o",
    "п": "n",
    "р": "p",
    "с": "c",
    "т": "t",  # Т
    "у": "y",
    "х": "x",
    "ѕ": "s",
    "ԁ": "d",
    "ԛ": "q",
    "ԝ": "w",
    "ӏ": "l",
    "һ": "h",
    "ү": "y",
    "ь": "b",
    "ɡ": "g",  # Latin script g
    # Greek
    "α": "a",
    "β": "b",  # Β
    "γ": "y",
    "ε": "e",  # Ε
    "ζ": "z",  # Ζ
    "η": "h",  # Η
    "ι": "i",  # Ι
    "κ": "k",  # Κ
    "μ": "m",  # Μ
    "ν": "v",  # Ν looks like N, ν like v
    "ο": "o",
    "ρ": "p",  # Ρ
    "τ": "t",  # Τ
    "υ": "y",  # Υ
    "χ": "x",  # Χ
    "ϲ": "c",
    "ϳ": "j",
    "ϱ": "p",
}
_TABLE = str.maketrans(_LOOK_ALIKES)


def skeleton(text: str) -> str:
    """`text` reduced to what it looks like: equal skeletons are names a reader cannot tell apart."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFD", folded).translate(_TABLE)
    return unicodedata.normalize("NFC", decomposed)
