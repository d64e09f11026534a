"""Does a greedy or beam request get the same output whatever else shares its batch?

    .venv/bin/python -m benchmarks.determinism [--families gpt2 llama_gqa] [--trials 6]

For each tiny random checkpoint family (built with `tests.support.tiny_checkpoints`), a set of target
requests (greedy, and beam search with 4 beams) is first run alone, one after another, on a fresh
engine. Then, in each trial, the same targets run on a fresh engine inside a mixed load: other
prompts of random lengths, greedy and sampled, arriving at random steps, with a per-trial token
budget (so prefill chunk boundaries move too). A target's output is identical when its token ids
equal those of its solo run; its logits rows are compared bitwise too, at every (request, tokens so
far) point both runs reached, a stricter measure than outputs on a tiny random model whose top
tokens rarely come close. The share of identical outputs is printed per family, kernel path
and kind, as a markdown table for docs/kernels.md.
"""

import argparse
import os
import random
import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer
from tqdm import tqdm

from service.engine import EngineConfig, LLMEngine, SamplingParams
from tests.support.tiny_checkpoints import build_checkpoint, training_text

GREEDY = SamplingParams(max_tokens=24, ignore_eos=True)
BEAM = SamplingParams(max_tokens=12, ignore_eos=True, num_beams=4)


Outputs = dict[str, list[int]]  # request id -> output token ids
Logits = dict[tuple, torch.Tensor]  # (request id, token ids so far) -> next-token logits


def run(engine: LLMEngine, arrivals: list[list[tuple[str, list[int], SamplingParams]]]):
    """Add the requests of arrivals[i] before step i and step until done. Returns the outputs
    and every next-token logits row computed (beams included) by request id and tokens."""
    seqs, logits = {}, {}
    model_run = engine.runner.run

    def recording_run(chunks):
        rows = model_run(chunks)
        done = [c.seq for c in chunks if c.completes_sequence]
        for seq, row in zip(done, rows, strict=True):
            logits[(seq.request_id, tuple(seq.token_ids))] = row
        return rows

    engine.runner.run = recording_run
    step = 0
    while step < len(arrivals) or engine.has_work():
        for request_id, ids, params in arrivals[step] if step < len(arrivals) else []:
            engine.add_request(request_id, ids, params)
            seqs[request_id] = engine.seqs[request_id]
        engine.step()
        step += 1
    return {rid: seq.output_token_ids for rid, seq in seqs.items()}, logits


def snippets(tokenizer: Tokenizer, rng: random.Random, count: int, lengths: tuple[int, int]):
    ids = tokenizer.encode(training_text()).ids
    for _ in range(count):
        n = rng.randint(*lengths)
        start = rng.randrange(len(ids) - n)
        yield ids[start : start + n]


def mixed_load(targets, tokenizer, rng: random.Random, num_steps: int = 40):
    """The targets and 24 other requests, in random order at random steps."""
    others = []
    for i, ids in enumerate(snippets(tokenizer, rng, 24, (5, 200))):
        sampled = SamplingParams(max_tokens=rng.randint(4, 30), temperature=0.8, seed=i)
        greedy = SamplingParams(max_tokens=rng.randint(4, 30))
        others.append((f"other{i}", ids, rng.choice([sampled, greedy])))
    arrivals = [[] for _ in range(num_steps)]
    for request in targets + others:
        arrivals[rng.randrange(num_steps)].append(request)
    for step in arrivals:
        rng.shuffle(step)
    return arrivals


def measure(
    checkpoint: Path, trials: int, seed: int, threads: int, dtype: str, device: str
) -> dict[str, tuple[int, int]]:
    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    rng = random.Random(seed)
    prompts = list(snippets(tokenizer, rng, 6, (3, 150)))
    targets = [(f"greedy{i}", ids, GREEDY) for i, ids in enumerate(prompts)]
    targets += [(f"beam{i}", ids, BEAM) for i, ids in enumerate(prompts)]

    def engine(budget: int) -> LLMEngine:
        config = EngineConfig(
            model_path=checkpoint,
            block_size=16,
            max_num_batched_tokens=budget,
            num_threads=threads,
            dtype=dtype,
            device=device,
        )
        return LLMEngine(config)

    solo, solo_logits = {}, {}
    for request in tqdm(targets, desc="alone", leave=False):
        outputs, logits = run(engine(512), [[request]])
        solo.update(outputs)
        solo_logits.update(logits)
    counts = {"greedy": [0, 0], "beam": [0, 0], "logits rows": [0, 0]}
    max_diff = 0.0
    for _ in tqdm(range(trials), desc="mixed", leave=False):
        budget = rng.choice([64, 128, 512])
        outputs, logits = run(engine(budget), mixed_load(targets, tokenizer, rng))
        for request_id, _, params in targets:
            kind = "beam" if params.beam_search else "greedy"
            counts[kind][0] += outputs[request_id] == solo[request_id]
            counts[kind][1] += 1
        # Bitwise: the targets' logits at every point both runs reached.
        for key in logits.keys() & solo_logits.keys():
            counts["logits rows"][0] += torch.equal(logits[key], solo_logits[key])
            counts["logits rows"][1] += 1
            max_diff = max(max_diff, (logits[key] - solo_logits[key]).abs().max().item())
    tqdm.write(f"{checkpoint.name}: largest logit difference to the solo run {max_diff:.2e}")
    return {kind: (same, total) for kind, (same, total) in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=["gpt2", "llama_gqa"])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    kernels = os.environ.get("KERNELS", "auto")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in tqdm(args.families, desc="families"):
            checkpoint = build_checkpoint(Path(tmp) / family, family, n_positions=512)
            shares = measure(
                checkpoint, args.trials, args.seed, args.threads, args.dtype, args.device
            )
            for kind, (same, total) in shares.items():
                cells = [
                    family,
                    args.device,
                    args.dtype,
                    kernels,
                    kind,
                    f"{same}/{total}",
                    f"{same / total:.1%}",
                ]
                rows.append("| " + " | ".join(cells) + " |")
    print("| family | device | dtype | KERNELS | decoding | identical to solo run | share |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
