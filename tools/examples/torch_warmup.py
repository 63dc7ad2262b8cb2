"""A server's warmup loop in plain PyTorch, calibrated with warmcal in three
lines (the import, `wp.record`, `wp.phase`): the worked example of
docs/calibration.md ("Calibrating a PyTorch server from start to finish").

The loop has the shape TensorRT-LLM's PyTorch backend, vLLM and SGLang use
at start-up: context (prefill) passes at token counts up to
max_num_tokens, then generation (decode) passes at the batch sizes a server
captures CUDA graphs for, one new token per sequence; a pass that runs out
of memory is skipped and the cache emptied, and warmup goes on. The model is
a tiny decoder whose attention scores grow with the square of the tokens,
as unfused attention does.

    python3 torch_warmup.py --out traces/                  # one GPU
    torchrun --nproc-per-node 4 torch_warmup.py --out traces/
    warmcal fit traces/rank-*.h5 -o table.json

Under `warmcal profile -- python3 torch_warmup.py ...` the same phases are
measured by the injected CUPTI profiler and record() writes nothing.
"""

import argparse
import sys

import torch

import warmcal.profile as wp                                         # warmcal, line 1


class Layer(torch.nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(hidden, 3 * hidden)
        self.out = torch.nn.Linear(hidden, hidden)
        self.up = torch.nn.Linear(hidden, 4 * hidden)
        self.down = torch.nn.Linear(4 * hidden, hidden)

    def forward(self, x):                  # x: (batch, tokens, hidden)
        b, t, h = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, h // self.heads).unbind(2)
        q, k, v = (y.transpose(1, 2) for y in (q, k, v))           # (b, heads, t, d)
        scores = q @ k.transpose(-1, -2) / (h // self.heads) ** 0.5   # (b, heads, t, t)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        attn = scores.masked_fill(causal, float("-inf")).softmax(-1) @ v
        x = x + self.out(attn.transpose(1, 2).reshape(b, t, h))
        return x + self.down(torch.nn.functional.gelu(self.up(x)))


class TinyDecoder(torch.nn.Module):
    def __init__(self, vocab=1000, hidden=64, heads=4, layers=2):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, hidden)
        self.layers = torch.nn.ModuleList(Layer(hidden, heads) for _ in range(layers))
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        return self.head(x[:, -1])         # next-token logits


def warmup_shapes(max_num_tokens, max_batch):
    """(tokens, batch, label): context passes at powers of two up to
    max_num_tokens (and max_num_tokens itself), then generation passes at
    the usual CUDA-graph batch sizes, one token per sequence."""
    shapes = []
    t = 64
    while t < max_num_tokens:
        shapes.append((t, 1, "context"))
        t *= 2
    shapes.append((max_num_tokens, 1, "context"))
    b = 1
    while b <= max_batch:
        shapes.append((b, b, "generation"))
        b *= 2
    return shapes


def run_warmup_forward(model, tokens, batch, device):
    """One pass with dummy input: a context pass is one sequence of tokens,
    a generation pass one token for each of batch sequences."""
    per_sequence = tokens // batch
    ids = torch.zeros(batch, per_sequence, dtype=torch.long, device=device)
    with torch.inference_mode():
        model(ids)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="warmcal-traces", help="folder for rank-<R>.h5")
    ap.add_argument("--model-name", default="tiny-decoder")
    ap.add_argument("--max-num-tokens", type=int, default=8192)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--device", default="cuda",
                    help="where the tensors live (the tests use cpu, with a stand-in for "
                         "torch.cuda)")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    model = TinyDecoder().to(device).eval()

    with wp.record(a.out, model=a.model_name) as rec:                # warmcal, line 2
        for tokens, batch, label in warmup_shapes(a.max_num_tokens, a.max_batch):
            try:
                with wp.phase(tokens=tokens, batch=batch, label=label):  # warmcal, line 3
                    run_warmup_forward(model, tokens, batch, device)
            except torch.cuda.OutOfMemoryError:
                print(f"warmup {label} tokens={tokens}: out of memory, skipped")
                torch.cuda.empty_cache()
    print("rank %d: %d phases in %s" % (rec.rank, rec.phases, rec.path or "(CUPTI profiler)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
