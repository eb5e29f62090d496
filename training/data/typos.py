"""Synthetic typo noise, specification "typo-v1" (METHODS.md §1).

The specification is normative down to the order of the random draws, so that noisy test copies
are bit-reproducible from a seed with Python's ``random.Random``. Do not reorder, add or skip
draws here without bumping :data:`TYPO_VERSION`.

Draws per word: (1) corrupt?  then, for a corrupted word, (2) edit type, (3) position, and for a
substitution (4) keyboard-or-uniform when the character has keyboard neighbours, (5) the new
character; for an insertion (4) the new character.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from models.product_text import ditto_items, join_ditto

logger = logging.getLogger(__name__)

TYPO_VERSION = "typo-v1"

P_WORD = 1 / 3  # share of eligible words that get one edit
P_KBD = 0.5  # share of substitutions that use a keyboard neighbour (when the key has one)
P_SIDE = 0.5  # augmentation: share of pair sides that are noised
MIN_WORD_LEN = 3  # shorter words are never touched

# Cumulative thresholds on the edit-type draw: substitute 0.38, swap 0.21, delete 0.21, insert 0.20.
_CUT_SUBSTITUTE = 0.38
_CUT_SWAP = 0.59
_CUT_DELETE = 0.80
EDIT_WEIGHTS: dict[str, float] = {"substitute": 0.38, "swap": 0.21, "delete": 0.21, "insert": 0.20}

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ROWS: tuple[str, ...] = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")

# Row offsets of a staggered QWERTY grid: left, right, the two keys above, the two keys below.
# The order matters: rng.choice picks by index into this string.
_NEIGHBOUR_OFFSETS: tuple[tuple[int, int], ...] = ((0, -1), (0, 1), (-1, 0), (-1, 1), (1, -1), (1, 0))


def _build_keyboard() -> dict[str, str]:
    position = {ch: (r, c) for r, row in enumerate(ROWS) for c, ch in enumerate(row)}
    table: dict[str, str] = {}
    for ch, (r, c) in position.items():
        neighbours = []
        for dr, dc in _NEIGHBOUR_OFFSETS:
            rr, cc = r + dr, c + dc
            if 0 <= rr < len(ROWS) and 0 <= cc < len(ROWS[rr]):
                neighbours.append(ROWS[rr][cc])
        table[ch] = "".join(neighbours)
    return table


#: Keyboard neighbours of every key of :data:`ROWS`, e.g. ``KBD["q"] == "w12a"``.
KBD: dict[str, str] = _build_keyboard()

# Uniform substitution candidates: the alphabet minus the (lower-cased) original character.
# Precomputed lists are draw-for-draw identical to building the list per call (same length,
# same order), only faster. Characters outside the alphabet can be replaced by any symbol.
_OTHERS: dict[str, list[str]] = {ch: [a for a in ALPHABET if a != ch] for ch in ALPHABET}
_ALL_SYMBOLS: list[str] = list(ALPHABET)


def _typo_word_with_kind(
    word: str, rng: random.Random, p_word: float = P_WORD, p_kbd: float = P_KBD
) -> tuple[str, str | None]:
    """Apply typo-v1 to one word; return ``(new_word, edit_kind)``, kind ``None`` if not corrupted.

    An identical-character swap reports ``"swap"`` although the word is unchanged, which is what
    the edit-share acceptance check needs.
    """
    if len(word) < MIN_WORD_LEN or rng.random() >= p_word:  # draw 1: corrupt?
        return word, None
    u = rng.random()  # draw 2: edit type
    if u < _CUT_SUBSTITUTE:
        i = rng.randrange(len(word))
        low = word[i].lower()
        use_keyboard = low in KBD and rng.random() < p_kbd  # draw only when neighbours exist
        new = rng.choice(KBD[low]) if use_keyboard else rng.choice(_OTHERS.get(low, _ALL_SYMBOLS))
        if word[i].isupper():
            new = new.upper()
        return word[:i] + new + word[i + 1 :], "substitute"
    if u < _CUT_SWAP:
        i = rng.randrange(len(word) - 1)
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :], "swap"
    if u < _CUT_DELETE:
        i = rng.randrange(len(word))
        return word[:i] + word[i + 1 :], "delete"
    i = rng.randrange(len(word) + 1)  # len + 1 positions: insertion may append at the end
    return word[:i] + rng.choice(ALPHABET) + word[i:], "insert"


def typo_word(word: str, rng: random.Random, p_word: float = P_WORD, p_kbd: float = P_KBD) -> str:
    """Corrupt one word with probability ``p_word`` by exactly one edit (typo-v1)."""
    return _typo_word_with_kind(word, rng, p_word, p_kbd)[0]


def typo(text: str, rng: random.Random, p_word: float = P_WORD, p_kbd: float = P_KBD) -> str:
    """Noise every whitespace-separated word of ``text``; words are re-joined with single spaces."""
    return " ".join(typo_word(w, rng, p_word, p_kbd) for w in text.split())


def typo_serialized(text: str, rng: random.Random, p_word: float = P_WORD, p_kbd: float = P_KBD) -> str:
    """Like :func:`typo`, but on a Ditto string only the attribute values are noised.

    The ``COL <attr> VAL`` markers are copied verbatim and consume no draws. Text that is not a
    Ditto serialisation (e.g. a bare title) is noised exactly as :func:`typo` would.
    """
    items = ditto_items(text)
    if items is None:
        return typo(text, rng, p_word, p_kbd)
    return join_ditto([(attr, typo(value, rng, p_word, p_kbd)) for attr, value in items])


def noisy_copy(texts_left: Sequence[str], texts_right: Sequence[str], seed: int) -> tuple[list[str], list[str]]:
    """Noisy test copy ``seed`` (METHODS §1.3): both sides of every row are noised.

    Row ``i`` (0-based, file order) uses ``Random(seed*7919 + i)`` on the left and
    ``Random(seed*104729 + i)`` on the right, so each row is reproducible on its own.
    """
    if len(texts_left) != len(texts_right):
        raise ValueError(f"left/right lengths differ: {len(texts_left)} != {len(texts_right)}")
    left = [typo_serialized(t, random.Random(seed * 7919 + i)) for i, t in enumerate(texts_left)]
    right = [typo_serialized(t, random.Random(seed * 104729 + i)) for i, t in enumerate(texts_right)]
    return left, right


class TypoAugmenter:
    """On-the-fly typo augmentation for training (METHODS §1.4).

    One ``Random(seed)`` stream is consumed in call order: call it on the left then the right side
    of each pair, in batch order. Each call draws once for "noise this side?" (``p_side``) and, if
    so, the typo draws. Never use it on validation data.
    """

    def __init__(self, seed: int, p_side: float = P_SIDE, p_word: float = P_WORD, p_kbd: float = P_KBD):
        if not 0.0 <= p_side <= 1.0:
            raise ValueError(f"p_side must be in [0, 1], got {p_side}")
        self.seed = seed
        self.p_side = p_side
        self.p_word = p_word
        self.p_kbd = p_kbd
        self.rng = random.Random(seed)

    def __call__(self, text: str) -> str:
        if self.rng.random() >= self.p_side:
            return text
        return typo_serialized(text, self.rng, self.p_word, self.p_kbd)

    def pair(self, left: str, right: str) -> tuple[str, str]:
        """Augment both sides of one pair (left first, as the draw order requires)."""
        new_left = self(left)
        return new_left, self(right)

    def getstate(self) -> object:
        """RNG state, to resume augmentation exactly after a checkpoint."""
        return self.rng.getstate()

    def setstate(self, state: object) -> None:
        self.rng.setstate(state)  # type: ignore[arg-type]
