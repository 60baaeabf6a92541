"""Precision follows the hardware: the resolution rule per machine class (capability probe
stubbed), explicit settings winning, and the resolved precision recorded by the stages."""

import json

import pytest

from bertforge import hardware
from bertforge.config import ConfigError, compose
from bertforge.hardware import Hardware, place
from bertforge.stages import pretrain as pretrain_stage


def machine(isa=(), capability="AVX2", onednn_bf16=False, gpu=None, gpu_bf16=False) -> Hardware:
    return Hardware("Test CPU", 2, tuple(isa), capability, onednn_bf16, gpu, gpu_bf16, "2.13.0")


AVX2 = machine(("avx2",))
AVX512 = machine(("avx2", "avx512f"), "AVX512", onednn_bf16=True)  # Skylake-X: bf16 only by emulation
ZEN4 = machine(("avx2", "avx512f", "avx512_bf16"), "AVX512", onednn_bf16=True)
SAPPHIRE = machine(("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"), "AVX512", onednn_bf16=True)
CAPPED = machine(("avx2", "avx512f", "avx512_bf16"), "AVX2", onednn_bf16=False)  # ATEN/ONEDNN ISA capped to AVX2
H100 = machine(("avx2",), gpu="NVIDIA H100", gpu_bf16=True)
V100 = machine(("avx2",), gpu="Tesla V100", gpu_bf16=False)


@pytest.mark.parametrize(
    "hw, accelerator, precision",
    [
        (AVX2, "cpu", "32-true"),
        (AVX512, "cpu", "32-true"),
        (ZEN4, "cpu", "bf16-mixed"),
        (SAPPHIRE, "cpu", "bf16-mixed"),
        (CAPPED, "cpu", "32-true"),
        (H100, "gpu", "bf16-mixed"),
        (V100, "gpu", "16-mixed"),
    ],
    ids=["avx2", "avx512-no-bf16", "avx512-bf16", "amx", "capped-to-avx2", "bf16-gpu", "fp16-gpu"],
)
def test_auto_resolves_per_machine(hw, accelerator, precision, capsys):
    p = place("auto", "auto", hw=hw)
    assert (p.accelerator, p.precision) == (accelerator, precision)
    assert p.num_workers == (0 if accelerator == "cpu" else 1)  # a GPU gets loader processes (2 cores -> 1)
    assert capsys.readouterr().err == ""  # auto never warns


def test_cpu_class_names_the_machine():
    assert (AVX2.cpu_class, AVX512.cpu_class, ZEN4.cpu_class, SAPPHIRE.cpu_class) == (
        "AVX2 CPU (no native bf16)",
        "AVX-512 CPU (no native bf16)",
        "bf16 CPU (AVX-512-BF16)",
        "bf16 CPU (AVX-512-BF16/AMX)",
    )


def test_explicit_precision_wins_with_a_one_line_warning_when_emulated(capsys):
    p = place("cpu", "bf16-mixed", hw=AVX2)
    assert p.precision == "bf16-mixed" and p.reason == "explicit"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bf16 is emulated" in err and "32-true" in err
    assert place("cpu", "32-true", hw=ZEN4).precision == "32-true"
    assert place("cpu", "bf16-mixed", hw=ZEN4).precision == "bf16-mixed"
    assert place("gpu", "32-true", hw=H100).precision == "32-true"
    assert capsys.readouterr().err == ""  # nothing to warn about


@pytest.mark.parametrize(
    "accelerator, precision, hw, message",
    [
        ("cpu", "16-mixed", ZEN4, "trainer.precision=16-mixed needs a GPU"),
        ("cpu", "fp8", ZEN4, "trainer.precision: 'fp8' is not one of auto, 32-true"),
        ("gpu", "auto", ZEN4, "trainer.accelerator=gpu but no CUDA GPU is visible"),
        ("tpu", "auto", ZEN4, "trainer.accelerator: 'tpu' is not one of auto"),
    ],
)
def test_impossible_settings_name_the_key(accelerator, precision, hw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        place(accelerator, precision, hw=hw)


def test_cpuinfo_flags_are_read(monkeypatch, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9B14\n"
        "flags\t\t: fpu sse avx2 avx512f avx512_bf16\n\n"
        "processor\t: 1\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9B14\n"
        "flags\t\t: fpu sse avx2 avx512f avx512_bf16\n"
    )
    model, flags = hardware._cpuinfo(str(info))
    assert model == "AMD EPYC 9B14 (family 25, model 17)"
    assert {"avx2", "avx512f", "avx512_bf16"} <= flags and "amx_bf16" not in flags
    info.write_text("processor\t: 0\nmodel name\t: Neoverse\nFeatures\t: fp asimd\n")  # no x86 ids: the name alone
    assert hardware._cpuinfo(str(info))[0] == "Neoverse"


def test_this_machine_resolves_consistently():
    hw = hardware.detect()
    p = place("cpu", "auto")
    assert p.precision == ("bf16-mixed" if hw.cpu_native_bf16 else "32-true")
    assert hw.cpu_class in hardware.header() and p.precision in hardware.header()


@pytest.mark.parametrize("hw, expected", [(AVX2, "32-true"), (ZEN4, "bf16-mixed")], ids=["avx2", "bf16-cpu"])
def test_pretrain_stage_records_the_precision_it_chose(tmp_path, monkeypatch, demo_prepared, hw, expected, capsys):
    import mlflow

    _, prepared, _ = demo_prepared
    monkeypatch.setattr(hardware, "detect", lambda: hw)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = compose(
        [
            "trainer=cpu",
            "pretrain.max_steps=4",
            "pretrain.val_every_n_steps=4",
            "pretrain.val_max_examples=32",
            f"paths.prepared={prepared}",
            f"paths.pretrained={tmp_path / 'pre'}",
            f"paths.checkpoints={tmp_path / 'ckpt'}",
            f"paths.metrics={tmp_path / 'm'}",
            f"paths.plots={tmp_path / 'p'}",
        ]
    )
    pretrain_stage.run(cfg)
    out = capsys.readouterr().out
    assert f"precision {expected}" in out and "hardware: Test CPU, 2 cores" in out
    metrics = json.loads((tmp_path / "m/pretrain.json").read_text())
    assert metrics["hardware"]["precision"] == expected and metrics["hardware"]["requested_precision"] == "auto"
    assert metrics["hardware"]["isa"] == " ".join(hw.isa) and metrics["hardware"]["cpu_class"] == hw.cpu_class
    run = mlflow.MlflowClient().search_runs(
        [mlflow.get_experiment_by_name("bertforge").experiment_id], "tags.stage = 'pretrain'"
    )[0]
    assert run.data.tags["precision"] == expected and run.data.tags["hardware"] == hw.cpu_class
    assert run.data.params["hardware.precision"] == expected and run.data.params["hardware.cpu_model"] == "Test CPU"
    assert json.loads((tmp_path / "pre/run.json").read_text())["precision"] == expected
