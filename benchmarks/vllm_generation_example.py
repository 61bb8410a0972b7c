"""One generation with vLLM where the prompt holds the demonstrations PIE chose: prints them, the prompt, the output.

    python benchmarks/vllm_generation_example.py [--encoder vllm|default] [--query "..."] [--input "..."] [-k 3]

* ``--encoder vllm`` (default): the bundled pool (249 demonstrations, 30 tasks) is embedded with PIE through
  vLLM's pooling runner (``VLLMEncoder("smollm2")``: PIE prompt, last-token pooling);
  ``--encoder default``: the library's default encoder (``pie_retriever.encoders.models.DEFAULT_MODEL``).
* Generation: SmolLM2-135M-Instruct in a vLLM generate engine on CPU, greedy, through ``PIEGenerator``: one
  completion (Alpaca few-shot prompt) and one chat (one user/assistant turn per demonstration).

Both engines run in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, one torch thread), which starts them
in ~10 s each instead of ~60 s; see the README's vLLM section.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
if os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0":
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported; in-process vLLM does not bind threads

DEFAULT_QUERY = "Write a haiku about a train station at night."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", choices=["vllm", "default"], default="vllm")
    parser.add_argument("--query", default=DEFAULT_QUERY)
    parser.add_argument("--input", default="")
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args(argv)

    from vllm import LLM, SamplingParams

    from pie_retriever import PIERetriever
    from pie_retriever.encoders.weights.gguf import smollm2_path
    from pie_retriever.integrations.vllm import PIEGenerator, VLLMEncoder, cpu_llm_kwargs
    from pie_retriever.pool.pools import load_bundled_pool

    pool = load_bundled_pool()
    started = time.perf_counter()
    encoder = VLLMEncoder("smollm2") if args.encoder == "vllm" else None
    retriever = PIERetriever.from_demonstrations(pool, encoder)
    print(f"[pool] {len(pool)} demonstrations embedded with {retriever.encoder.config()['type']}:"
          f"{retriever.encoder.config().get('model')} in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    llm = LLM(model=str(smollm2_path()), **cpu_llm_kwargs())
    print(f"[engine] generate engine started in {time.perf_counter() - started:.1f} s")
    gen = PIEGenerator(llm, retriever, k=args.k)
    greedy = SamplingParams(temperature=0.0, max_tokens=args.max_tokens)

    result, = gen.generate([(args.query, args.input)], greedy, use_tqdm=False)
    bar = "=" * 100
    print(bar)
    print(f"QUERY: {args.query}" + (f"\nINPUT: {args.input}" if args.input else ""))
    print("DEMONSTRATIONS PIE CHOSE (best first; in the prompt the best is last, right before the query):")
    for h in result.demonstrations:
        d = h.demonstration
        print(f"  rank {h.rank}  score {h.score:.3f}  task {d.metadata.get('task')}  id {d.id}")
        print(f"    instruction: {d.instruction}" + (f"\n    input: {d.input}" if d.input else ""))
        print("    output: " + d.output.replace("\n", "\n            "))
    if result.dropped:
        print(f"  (dropped to fit the token budget: {[h.id for h in result.dropped]})")
    print(bar)
    print(f"PROMPT ({result.few_shot.num_tokens} tokens, budget {gen.builder.budget}):")
    print(result.prompt)
    print(bar)
    print("OUTPUT (completion):")
    print(result.text.strip())
    print(bar)

    chat, = gen.chat([(args.query, args.input)], greedy, use_tqdm=False)
    print(f"CHAT: {len(chat.prompt)} messages ({chat.few_shot.num_tokens} tokens with the chat template); output:")
    print(chat.text.strip())
    print(bar)
    return 0


if __name__ == "__main__":
    sys.exit(main())
