"""Does a pre-trained model know the demo language's subject-verb agreement?

Masks the main verb of generated grammatical sentences and counts how often the MLM head scores
the correctly numbered form (`X` vs `Xs`) higher. Chance is 50%.

    python benchmarks/agreement_probe.py outputs/pretrain [--sentences 400]
"""

import argparse
import random

import torch
from transformers import AutoTokenizer, BertForPreTraining

from bertforge.data.demo_language import N_TOPICS, DemoLanguage, demo_lexicon
from common import print_header


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--sentences", type=int, default=400)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    print_header()
    model = BertForPreTraining.from_pretrained(args.model_dir).eval()
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    lang, rng = DemoLanguage(), random.Random(args.seed)
    verbs = {v for group in demo_lexicon().verbs for v in group}
    right = 0
    for _ in range(args.sentences):
        words = lang.sentence(rng, rng.randrange(N_TOPICS))[0].split()
        i = next(i for i, w in enumerate(words) if w in verbs or (w.endswith("s") and w[:-1] in verbs))
        base = words[i] if words[i] in verbs else words[i][:-1]
        masked = words[:i] + [tok.mask_token] + words[i + 1 :]
        enc = tok(" ".join(masked), return_tensors="pt")
        pos = int((enc["input_ids"][0] == tok.mask_token_id).nonzero()[0, 0])
        with torch.no_grad():
            logits = model(**enc).prediction_logits[0, pos]
        plural_form, singular_form = tok.convert_tokens_to_ids(base), tok.convert_tokens_to_ids(base + "s")
        right += int((logits[plural_form] > logits[singular_form]).item() == (words[i] == base))
    print(
        f"| model | sentences | agreement accuracy |\n|---|---|---|\n| {args.model_dir} | {args.sentences} | {right / args.sentences:.3f} |"
    )


if __name__ == "__main__":
    main()
