"""Calibration variants on a dump of `cargo xtask calibrate --dump FILE` (docs/experiments.md §15).

An independent re-implementation of the careful calibration in scikit-learn (logistic
regression, C = 1 / l2) with the same features, exclusive-group decoding and threshold rule,
used to measure variants offline and to check the Rust fit: on the same dump its
"base C=1 p0.75" row matches `cargo xtask calibrate`'s careful-dev table.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install numpy scikit-learn
    cargo xtask calibrate --dump /tmp/dump.jsonl
    /tmp/v/bin/python scripts/careful_variants.py /tmp/dump.jsonl
"""

import json
import math
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

ROWS = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
CATS = sorted({r["category"] for r in ROWS})
GRID = [round(0.2 + 0.05 * i, 2) for i in range(11)]


def lg(p):
    p = min(max(p, 1e-6), 1 - 1e-6)
    return max(-8.0, min(8.0, math.log(p / (1 - p))))


def feats(r, t, extra):
    rv = sorted((x[t] for x in r["reviews"]), reverse=True)
    m = sum(1 for x in rv if x >= 0.5)
    n = max(len(rv), 1)
    f = [lg(r["product"][t]), lg(rv[0] if rv else 0.0), math.log1p(m), m / n, math.log(n)]
    if extra:
        f += [sum(lg(x) for x in rv[:2]) / max(1, min(2, len(rv))), sum(lg(x) for x in rv) / n]
    return f


def gold(r, key="careful"):
    return [r["tags"].index(t) for t in r[key] if t in r["tags"]]


def decode(probs, r, th, min_tags=0):
    group = {t: g for g, tags in enumerate(r["groups"]) for t in tags}
    out, used = [], set()
    for i in sorted(range(len(probs)), key=lambda i: -probs[i]):
        if len(out) >= 6 or (probs[i] < th and len(out) >= min_tags):
            break
        g = group.get(r["tags"][i])
        if g is not None and g in used:
            continue
        if g is not None:
            used.add(g)
        out.append(i)
    return out


def prf(preds, golds):
    tp = sum(len(set(p) & set(g)) for p, g in zip(preds, golds))
    n_p, n_g = sum(map(len, preds)), sum(map(len, golds))
    p = tp / n_p if n_p else 0.0
    rec = tp / n_g if n_g else 0.0
    return p, rec, (2 * p * rec / (p + rec) if p + rec else 0.0)


def design(rs, tag_params, extra):
    T = len(rs[0]["tags"])
    X, y = [], []
    for r in rs:
        g = set(gold(r))
        for t in range(T):
            f = feats(r, t, extra)
            row = list(f)
            if tag_params:
                oh, sl = [0.0] * T, [0.0] * T
                oh[t], sl[t] = 1.0, f[0]
                row += oh + sl
            X.append(row)
            y.append(1 if t in g else 0)
    return np.array(X), np.array(y)


def probs(model, rs, tag_params, extra):
    X, _ = design(rs, tag_params, extra)
    return model.predict_proba(X)[:, 1].reshape(len(rs), -1)


def run(name, C=1.0, target=0.75, tag_params=True, extra=False, min_tags=0):
    line, all_p, all_g = f"{name:<28}", [], []
    for c in CATS:
        tr = [r for r in ROWS if r["category"] == c and r["split"] == "train"]
        dev = [r for r in ROWS if r["category"] == c and r["split"] == "dev"]
        oof = np.zeros((len(tr), len(tr[0]["tags"])))
        for a, b in KFold(5, shuffle=True, random_state=0).split(tr):
            m = LogisticRegression(C=C, max_iter=3000).fit(*design([tr[i] for i in a], tag_params, extra))
            oof[b] = probs(m, [tr[i] for i in b], tag_params, extra)
        best = None
        for th in GRID:
            p, _, f = prf([decode(oof[i], r, th, min_tags) for i, r in enumerate(tr)], [gold(r) for r in tr])
            score = f if p >= target else p - 1
            if best is None or score > best[0]:
                best = (score, th)
        m = LogisticRegression(C=C, max_iter=3000).fit(*design(tr, tag_params, extra))
        pd = probs(m, dev, tag_params, extra)
        preds = [decode(pd[i], r, best[1], min_tags) for i, r in enumerate(dev)]
        golds = [gold(r) for r in dev]
        p, rec, f = prf(preds, golds)
        line += f" {c[:6]} {p:.2f}/{rec:.2f}/{f:.2f}"
        all_p += preds
        all_g += golds
    p, rec, f = prf(all_p, all_g)
    print(line + f" | all P {p:.3f} R {rec:.3f} F1 {f:.3f}")


if __name__ == "__main__":
    run("base C=1 p0.75")
    run("base C=1 p0.70", target=0.70)
    run("base C=0.3 p0.75", C=0.3)
    run("base C=3 p0.75", C=3.0)
    run("no per-tag parameters", tag_params=False)
    run("+ top-2 and mean review", extra=True)
    run("at least 1 tag", min_tags=1)
