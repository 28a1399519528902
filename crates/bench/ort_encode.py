"""ONNX Runtime side of the encoder benchmark: e5-small (HF directory) on the CPU, fp32 or int8.

Reads the token ids of each review from --ids (one JSON list per line, as `cargo xtask bench`
writes them), runs length-sorted batches of --batch padded to their longest review through
the whole encoder, mean-pooled over the real tokens, in an ONNX Runtime session of --threads
intra-op threads (one inter-op thread, all graph optimisations), and prints one JSON line:
tokens, reviews, seconds (median of --repeats runs after one warm-up), runs, threads,
onnxruntime, quant. --out-f32 writes the pooled vectors as raw little-endian f32 in input
order.

The models are made once from the same weights (config.json, model.safetensors) and cached
in --onnx-dir under the weights' sha256 prefix, so changed weights export again:

1. `export.onnx` (removed once (2) is made): the encoder built in PyTorch from the safetensors weights (inputs
   `input_ids` and `attention_mask`, [batch, seq] int64; output `pooled`, [batch, hidden]),
   written by the TorchScript exporter (`dynamo=False`; the new one needs onnxscript) with
   dynamic batch and sequence axes;
2. `fp32.onnx`: that graph through ONNX Runtime's transformer optimizer (attention,
   layer-norm and GELU fusions), which its quantization docs ask for before quantizing
   transformers, so that attention quantizes as one operator;
3. `int8.onnx` (--quant int8): (2) after the quantization pre-processing (symbolic shape
   inference, graph optimisation, ONNX shape inference), dynamically quantized:
   `quantize_dynamic(..., weight_type=QuantType.QInt8)`, int8 weights and per-batch int8
   activations.
"""
import argparse, hashlib, json, os, statistics, sys, time, warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort

# Bump when the export recipe changes, so cached models are made again.
RECIPE = 1


def build_encoder(model_dir):
    """The encoder as a torch module, from the HF directory's safetensors weights."""
    import torch
    from safetensors.torch import load_file

    cfg = json.load(open(f"{model_dir}/config.json"))
    w = load_file(f"{model_dir}/model.safetensors")
    w = {k.removeprefix("bert.").removeprefix("roberta."): v.float() for k, v in w.items()}
    h, nh, n_layers = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    eps = cfg.get("layer_norm_eps", 1e-12)
    nn = torch.nn

    def linear(name):
        out_f, in_f = w[name + ".weight"].shape
        m = nn.Linear(in_f, out_f)
        m.weight.data.copy_(w[name + ".weight"])
        m.bias.data.copy_(w[name + ".bias"])
        return m

    def norm(name):
        m = nn.LayerNorm(h, eps=eps)
        m.weight.data.copy_(w[name + ".weight"])
        m.bias.data.copy_(w[name + ".bias"])
        return m

    class Layer(nn.Module):
        """One BERT layer, written as Hugging Face's so ONNX Runtime's fusions match it."""

        def __init__(self, p):
            super().__init__()
            self.query, self.key, self.value = (linear(p + f"attention.self.{n}") for n in ("query", "key", "value"))
            self.attn_out, self.attn_norm = linear(p + "attention.output.dense"), norm(p + "attention.output.LayerNorm")
            self.inter, self.out, self.out_norm = linear(p + "intermediate.dense"), linear(p + "output.dense"), norm(p + "output.LayerNorm")
            self.d = h // nh

        def heads(self, x):
            return x.view(x.size()[:-1] + (nh, self.d)).permute(0, 2, 1, 3)

        def forward(self, x, mask_bias):
            q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
            scores = torch.matmul(q, k.transpose(-1, -2)) / (self.d**0.5) + mask_bias
            c = torch.matmul(torch.softmax(scores, dim=-1), v).permute(0, 2, 1, 3).contiguous()
            c = c.view(c.size()[:-2] + (h,))
            x = self.attn_norm(self.attn_out(c) + x)
            return self.out_norm(self.out(nn.functional.gelu(self.inter(x))) + x)

    class Encoder(nn.Module):
        """Embeddings, every layer, mean pooling over the real tokens."""

        def __init__(self):
            super().__init__()
            self.word = nn.Embedding.from_pretrained(w["embeddings.word_embeddings.weight"])
            self.position = nn.Embedding.from_pretrained(w["embeddings.position_embeddings.weight"])
            self.register_buffer("token_type", w["embeddings.token_type_embeddings.weight"][0].clone())
            self.register_buffer("position_ids", torch.arange(cfg["max_position_embeddings"]).unsqueeze(0))
            self.emb_norm = norm("embeddings.LayerNorm")
            self.layers = nn.ModuleList(Layer(f"encoder.layer.{i}.") for i in range(n_layers))

        def forward(self, input_ids, attention_mask):
            pos = self.position_ids[:, : input_ids.size(1)]
            x = self.emb_norm(self.word(input_ids) + self.position(pos) + self.token_type)
            m = attention_mask.to(x.dtype)
            mask_bias = (1.0 - m[:, None, None, :]) * -10000.0
            for layer in self.layers:
                x = layer(x, mask_bias)
            return (x * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True)

    return Encoder().eval(), cfg


def replace_atomically(make, path):
    """Runs make(tmp) and renames tmp to path, so an interrupted run leaves no half file."""
    tmp = path.with_name(path.name + ".tmp")
    make(tmp)
    os.replace(tmp, path)


def export(model_dir, path):
    """Writes the encoder as ONNX to path (step 1)."""
    import torch

    enc, _ = build_encoder(model_dir)
    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        replace_atomically(
            lambda tmp: torch.onnx.export(
                enc,
                (ids, mask),
                str(tmp),
                input_names=["input_ids", "attention_mask"],
                output_names=["pooled"],
                dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "pooled": {0: "batch"}},
                opset_version=17,
                do_constant_folding=True,
                dynamo=False,
            ),
            path,
        )


def optimize(cfg, src, path):
    """ONNX Runtime's transformer optimizer on src, written to path (step 2)."""
    from onnxruntime.transformers.optimizer import optimize_model

    opt = optimize_model(str(src), model_type="bert", num_heads=cfg["num_attention_heads"], hidden_size=cfg["hidden_size"], opt_level=0)
    fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
    print(f"ort_encode: fused operators {fused}", file=sys.stderr)
    replace_atomically(lambda tmp: opt.save_model_to_file(str(tmp)), path)


def quantize(src, path):
    """Pre-processing and dynamic int8 quantization of src, written to path (step 3)."""
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    pre = path.with_name(path.name + ".pre.onnx")
    quant_pre_process(str(src), str(pre), auto_merge=True)
    replace_atomically(lambda tmp: quantize_dynamic(str(pre), str(tmp), weight_type=QuantType.QInt8), path)
    pre.unlink()


def model_file(model_dir, onnx_dir, quant):
    """The cached ONNX model of the weights at this precision, made when missing."""
    weights = Path(model_dir) / "model.safetensors"
    sha = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    model_dir = Path(model_dir).resolve()
    cfg = json.load(open(model_dir / "config.json"))
    onnx_dir = Path(onnx_dir).resolve()
    onnx_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{model_dir.name}-{sha.hexdigest()[:16]}-r{RECIPE}"
    raw, fp32, int8 = (onnx_dir / f"{stem}-{n}.onnx" for n in ("export", "fp32", "int8"))
    if not fp32.exists() or (quant == "int8" and not int8.exists()):
        t0 = time.perf_counter()
        # ONNX Runtime's tools may leave files in the working directory: keep them in the cache.
        cwd = os.getcwd()
        os.chdir(onnx_dir)
        try:
            if not fp32.exists():
                if not raw.exists():
                    print(f"ort_encode: exporting {weights} to {raw}", file=sys.stderr)
                    export(model_dir, raw)
                optimize(cfg, raw, fp32)
                raw.unlink()  # only (2) is made from it, and it is as large as the weights
            if quant == "int8" and not int8.exists():
                print(f"ort_encode: quantizing to {int8}", file=sys.stderr)
                quantize(fp32, int8)
        finally:
            os.chdir(cwd)
        print(f"ort_encode: models made in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return (int8 if quant == "int8" else fp32), cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="HF directory: config.json, model.safetensors")
    ap.add_argument("--ids", required=True, help="one JSON list of token ids per line")
    ap.add_argument("--onnx-dir", required=True, help="where the exported models are cached")
    ap.add_argument("--quant", choices=["fp32", "int8"], default="fp32")
    ap.add_argument("--out-f32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if a.threads < 1 or a.batch < 1 or a.repeats < 1:
        ap.error("--threads, --batch and --repeats must be at least 1")
    ids = [json.loads(l) for l in open(a.ids, encoding="utf-8") if l.strip()]
    if not ids or any(not r for r in ids):
        ap.error(f"{a.ids} has no reviews or an empty one")
    path, cfg = model_file(a.model, a.onnx_dir, a.quant)
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    pad = cfg.get("pad_token_id", 0)

    def run():
        res = [None] * len(ids)
        for s in range(0, len(order), a.batch):
            chunk = order[s : s + a.batch]
            l = max(len(ids[i]) for i in chunk)
            x = np.full((len(chunk), l), pad, dtype=np.int64)
            m = np.zeros((len(chunk), l), dtype=np.int64)
            for j, i in enumerate(chunk):
                x[j, : len(ids[i])] = ids[i]
                m[j, : len(ids[i])] = 1
            (pooled,) = sess.run(None, {"input_ids": x, "attention_mask": m})
            for j, i in enumerate(chunk):
                res[i] = pooled[j]
        return res

    run()  # warm-up
    times, out = [], None
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    if a.out_f32:
        np.stack(out).astype("<f4").tofile(a.out_f32)
    print(json.dumps({"tokens": sum(map(len, ids)), "reviews": len(ids), "seconds": statistics.median(times), "runs": times, "threads": a.threads, "onnxruntime": ort.__version__, "quant": a.quant, "model": str(path)}))


if __name__ == "__main__":
    main()
