"""PyTorch side of the encoder benchmark: e5-small (HF directory) on the CPU.

Reads either one text per line from --input (tokenised as `passage: <text>`, at most
--max-tokens tokens) or the token ids of each review from --ids (one JSON list per line,
as `cargo xtask bench` writes them), runs length-sorted batches padded to their longest
review through the embeddings and the first --layers layers (all by default), mean-pools
over the real tokens, and prints one JSON line: tokens, seconds (median of --repeats runs
after one warm-up). --out writes the pooled vectors as .npy, --out-f32 as raw
little-endian f32 in input order. Threads: --threads.
"""
import argparse, json, statistics, time

import numpy as np
import torch
from safetensors.torch import load_file


def gelu(x):
    return torch.nn.functional.gelu(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--input")
    ap.add_argument("--ids")
    ap.add_argument("--layers", type=int)
    ap.add_argument("--out-f32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(f"{a.model}/config.json"))
    w = load_file(f"{a.model}/model.safetensors")
    w = {k.removeprefix("bert.").removeprefix("roberta."): v for k, v in w.items()}
    h, nh, n_layers = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    eps = cfg.get("layer_norm_eps", 1e-12)
    if a.ids:
        ids = [json.loads(l) for l in open(a.ids, encoding="utf-8") if l.strip()]
    else:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(f"{a.model}/tokenizer.json")
        texts = [l.rstrip("\n") for l in open(a.input, encoding="utf-8")]
        ids = []
        for t in texts:
            e = tok.encode("passage: " + t).ids
            if len(e) > a.max_tokens:
                e = e[: a.max_tokens - 1] + [e[-1]]
            ids.append(e)
    if a.layers is not None:
        n_layers = min(n_layers, a.layers)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    pad = cfg.get("pad_token_id", 0)

    def lin(x, name):
        return torch.nn.functional.linear(x, w[name + ".weight"], w[name + ".bias"])

    def ln(x, name):
        return torch.nn.functional.layer_norm(x, (h,), w[name + ".weight"], w[name + ".bias"], eps)

    @torch.inference_mode()
    def encode(batch):
        l = max(len(r) for r in batch)
        x = torch.full((len(batch), l), pad, dtype=torch.long)
        m = torch.zeros((len(batch), l))
        for i, r in enumerate(batch):
            x[i, : len(r)] = torch.tensor(r)
            m[i, : len(r)] = 1
        pos = torch.arange(l).unsqueeze(0)
        e = w["embeddings.word_embeddings.weight"][x] + w["embeddings.position_embeddings.weight"][pos] + w["embeddings.token_type_embeddings.weight"][0]
        x = ln(e, "embeddings.LayerNorm")
        bias = (1.0 - m)[:, None, None, :] * -1e9
        b = len(batch)
        for i in range(n_layers):
            p = f"encoder.layer.{i}."
            q, k, v = (lin(x, p + f"attention.self.{n}").view(b, l, nh, h // nh).transpose(1, 2) for n in ("query", "key", "value"))
            c = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            c = c.transpose(1, 2).reshape(b, l, h)
            x = ln(lin(c, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            y = lin(gelu(lin(x, p + "intermediate.dense")), p + "output.dense")
            x = ln(y + x, p + "output.LayerNorm")
        return (x * m[..., None]).sum(1) / m.sum(1, keepdim=True)

    times, out = [], None
    for run in range(a.repeats + 1):  # the first is the warm-up
        t0 = time.perf_counter()
        res = [None] * len(ids)
        for s in range(0, len(order), a.batch):
            chunk = order[s : s + a.batch]
            pooled = encode([ids[i] for i in chunk])
            for j, i in enumerate(chunk):
                res[i] = pooled[j]
        if run:
            times.append(time.perf_counter() - t0)
        out = res
    if a.out:
        np.save(a.out, torch.stack(out).numpy())
    if a.out_f32:
        torch.stack(out).numpy().astype("<f4").tofile(a.out_f32)
    print(json.dumps({"tokens": sum(map(len, ids)), "reviews": len(ids), "seconds": statistics.median(times), "runs": times, "threads": a.threads, "layers": n_layers, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
