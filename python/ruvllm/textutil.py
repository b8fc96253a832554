"""Text helpers for ingestion: chunking long documents and MinHash signatures for near-duplicates."""
import hashlib
import re

import numpy as np

# all-MiniLM-L6-v2 sees 256 word pieces; English averages ~1.3 pieces a word, so 180 words keep a
# chunk inside the window with room for [CLS]/[SEP] and the odd long word.
CHUNK_WORDS = 180

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+", re.UNICODE)


def chunk_text(text, max_words=CHUNK_WORDS):
    """Split text into chunks of at most max_words words, on paragraph, then sentence, boundaries.

    A text that fits is returned whole, so short documents stay one node.
    """
    if len(text.split()) <= max_words:
        return [text.strip()]
    pieces = []
    for paragraph in _PARAGRAPH.split(text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph.split()) <= max_words:
            pieces.append(paragraph)
            continue
        for sentence in _SENTENCE.split(paragraph):
            words = sentence.split()
            # A single sentence longer than a chunk is cut at word boundaries.
            for i in range(0, len(words), max_words):
                pieces.append(" ".join(words[i:i + max_words]))
    chunks, current, count = [], [], 0
    for piece in pieces:
        n = len(piece.split())
        if current and count + n > max_words:
            chunks.append("\n\n".join(current))
            current, count = [], 0
        current.append(piece)
        count += n
    if current:
        chunks.append("\n\n".join(current))
    return chunks


MINHASH_PERMUTATIONS = 64
MINHASH_BANDS = 16  # 16 bands of 4 rows: pairs with Jaccard ~0.5 collide in a band with p ~0.65
_MERSENNE = np.uint64((1 << 61) - 1)
_rng = np.random.default_rng(20261125)
_A = _rng.integers(1, (1 << 61) - 1, MINHASH_PERMUTATIONS, dtype=np.uint64)
_B = _rng.integers(0, (1 << 61) - 1, MINHASH_PERMUTATIONS, dtype=np.uint64)


def shingles(text, size=3):
    """Word shingles of the lower-cased text (the whole text as one shingle when it is short)."""
    words = _WORD.findall(text.lower())
    if len(words) < size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + size]) for i in range(len(words) - size + 1)}


def _shingle_hashes(items):
    return np.array([int.from_bytes(hashlib.blake2b(s.encode(), digest_size=7).digest(), "little")
                     for s in items], dtype=np.uint64)


def minhash(text):
    """MinHash signature (MINHASH_PERMUTATIONS uint64 values) of the text's word shingles."""
    items = shingles(text)
    if not items:
        return np.full(MINHASH_PERMUTATIONS, np.iinfo(np.uint64).max, dtype=np.uint64)
    h = _shingle_hashes(items)
    # (a*h + b) mod p with 56-bit h and 61-bit a wraps uint64; the wrap is a fixed bijection-free
    # mix, which is all MinHash needs from a hash family.
    values = (_A[:, None] * h[None, :] + _B[:, None]) % _MERSENNE
    return values.min(axis=1)


def minhash_bands(signature):
    """One int64 per LSH band: documents sharing any band value are near-duplicate candidates."""
    rows = MINHASH_PERMUTATIONS // MINHASH_BANDS
    bands = []
    for b in range(MINHASH_BANDS):
        chunk = signature[b * rows:(b + 1) * rows].tobytes()
        digest = hashlib.blake2b(bytes([b]) + chunk, digest_size=8).digest()
        bands.append(int.from_bytes(digest, "little", signed=True))
    return bands


def jaccard_estimate(sig_a, sig_b):
    return float(np.mean(np.asarray(sig_a) == np.asarray(sig_b)))
