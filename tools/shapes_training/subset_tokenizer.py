"""A small subset of OpenAI CLIP's byte-pair encoding for the shapes models.

CLIP's vocabulary has 49,408 tokens; an embedding table that size would dwarf a small
model. We keep every byte-level character (with and without the end-of-word mark), the
special tokens, and exactly the merges that CLIP's BPE applies to the words of our
captions and questions — so those words tokenize exactly as real CLIP tokenizes them, and
any other word still tokenizes (into smaller pieces) instead of failing.

The result is a standard ``CLIPTokenizer`` (``vocab.json`` + ``merges.txt``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

SPECIAL = ("<|startoftext|>", "<|endoftext|>")
# CLIP's pre-tokenisation: specials, contractions, letter runs, single digits, other runs.
_PATTERN = re.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE
)

#: Words users commonly put around object names, kept so such queries tokenize as in CLIP.
EXTRA_WORDS = """
a an the of in on at to is are there this that it its what which where who how many much colour color
colours colors coloured colored shape shapes object objects thing things image picture photo scene
left right top bottom middle center centre above below next beside near between and or with
find show point look highlight describe answer question yes no not any some all one two three four
five six seven eight nine zero small large big tiny little bright dark white black gray grey brown
please can you do does see visible region regions unmasked relevant
""".split()


@cache
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map from bytes to printable unicode characters.

    >>> len(bytes_to_unicode()), bytes_to_unicode()[ord("a")]
    (256, 'a')
    """
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def words_of(texts: Iterable[str]) -> set[str]:
    """CLIP pre-tokens (lower-cased, byte-encoded) of some texts.

    >>> sorted(words_of(["What colour is the star?"]))
    ['?', 'colour', 'is', 'star', 'the', 'what']
    """
    enc = bytes_to_unicode()
    out: set[str] = set()
    for t in texts:
        for w in _PATTERN.findall(" ".join(t.lower().split())):
            if w not in SPECIAL:
                out.add("".join(enc[b] for b in w.encode("utf-8")))
    return out


def _bpe_trace(word: str, ranks: dict[tuple[str, str], int]) -> tuple[list[str], list[tuple[str, str]]]:
    """CLIP's BPE on one pre-token; returns the final symbols and the merges it applied."""
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    used: list[tuple[str, str]] = []
    while len(symbols) > 1:
        pairs = {(a, b) for a, b in zip(symbols, symbols[1:])}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        used.append(best)
        merged, i = [], 0
        while i < len(symbols):
            if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols, used


def build_subset_tokenizer(bpe_dir: str | Path, texts: Iterable[str], out_dir: str | Path, *, context: int = 32):
    """Write a ``CLIPTokenizer`` whose vocabulary is CLIP's, restricted to ``texts``' words.

    Returns the loaded tokenizer. ``bpe_dir`` holds CLIP's ``vocab.json`` and ``merges.txt``.

    >>> import tempfile
    >>> bpe = Path(__file__).resolve().parents[2] / "data" / "clip-bpe"
    >>> build_subset_tokenizer(bpe, ["a red star"], tempfile.mkdtemp()).tokenize("a red star")
    ['a</w>', 'red</w>', 'star</w>']
    """
    from transformers import CLIPTokenizer

    bpe_dir, out_dir = Path(bpe_dir), Path(out_dir)
    vocab: dict[str, int] = json.loads((bpe_dir / "vocab.json").read_text(encoding="utf-8"))
    merge_lines = (bpe_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split()) for line in merge_lines[1:] if line and not line.startswith("#")]
    ranks = {m: i for i, m in enumerate(merges)}
    used: set[tuple[str, str]] = set()
    for w in words_of(list(texts) + EXTRA_WORDS):
        _, applied = _bpe_trace(w, ranks)
        used.update(applied)
    base = set(bytes_to_unicode().values())
    keep = base | {c + "</w>" for c in base} | set(SPECIAL) | {a + b for a, b in used}
    missing = sorted(t for t in keep if t not in vocab)
    if missing:
        raise ValueError(f"{bpe_dir} is not CLIP's BPE: tokens {missing[:5]} are not in its vocab.json")
    kept = sorted(keep, key=lambda t: vocab[t])  # CLIP's order: characters first, specials last
    kept_merges = sorted(used, key=lambda m: ranks[m])
    tok = CLIPTokenizer(
        vocab={t: i for i, t in enumerate(kept)},
        merges=kept_merges,
        model_max_length=context,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out_dir)
    return tok
