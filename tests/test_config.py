import ast
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bertforge.config import ConfigError, compose, load_params, select_task, write_params
from conftest import REPO


def test_committed_params_yaml_equals_composed_conf(tmp_path):
    out = tmp_path / "params.yaml"
    write_params(out)
    assert out.read_text() == (REPO / "params.yaml").read_text(), (
        "params.yaml is stale: run `python -m bertforge.config` and commit it"
    )


def test_no_runtime_resolvers_in_conf():
    for f in (REPO / "conf").rglob("*.yaml"):
        text = f.read_text()
        for bad in ("${oc.env", "${now:", "${hydra:"):
            assert bad not in text, f"{f}: runtime resolver {bad}"


def test_group_choices_compose():
    cfg = compose(["model=mini", "tasks=glue", "task=rte"])
    assert (cfg.model.num_hidden_layers, cfg.model.hidden_size) == (4, 256)
    assert list(cfg.tasks) == ["cola", "sst2", "mrpc", "stsb", "rte"]
    assert cfg.task.name == "rte" and cfg.task.local.data_dir == "../shared/data/RTE"
    assert "task" not in compose()  # default: no single task, the suite drives DVC


def test_params_seam_selects_task_and_applies_overrides():
    cfg = load_params(REPO / "params.yaml", ["finetune.lr=0.5"], "demo")
    assert cfg.task.name == "demo" and cfg.finetune.lr == 0.5
    with pytest.raises(ConfigError, match=r"tasks\.rte: no such task"):
        select_task(OmegaConf.create({"tasks": {"demo": {}}}), "rte")


def test_a_task_trains_at_finetune_then_its_own_then_the_recipes_per_task_settings():
    from bertforge.config import finetune_settings

    over = ["finetune.lr=0.5", "finetune.epochs=3", "+task.finetune.epochs=5", "+task.finetune.batch_size=8"]
    mine = ["+finetune.per_task.rte.batch_size=4", "+finetune.per_task.sst2.lr=0.1"]
    fc = finetune_settings(compose(["task=rte", *over, *mine]))
    assert (fc.lr, fc.epochs, fc.batch_size) == (0.5, 5, 4)  # sst2's entry is not rte's
    fc = finetune_settings(compose(["task=sst2", *over, *mine]))
    assert (fc.lr, fc.epochs, fc.batch_size) == (0.1, 5, 8)
    assert finetune_settings(compose(["+budget=cpu60", "task=sst2", "~finetune.per_task.sst2"])).epochs == 8


@pytest.mark.parametrize(
    "name,dims",
    [
        ("tiny", (2, 128, 2)),
        ("mini", (4, 256, 4)),
        ("small", (4, 512, 8)),
        ("medium", (8, 512, 8)),
        ("base", (12, 768, 12)),
        ("large", (24, 1024, 16)),
    ],
)
def test_model_grid(name, dims):
    m = compose([f"model={name}"]).model
    assert (m.num_hidden_layers, m.hidden_size, m.num_attention_heads) == dims
    assert m.intermediate_size == 4 * m.hidden_size


def test_paths_anchor_at_the_checkout_being_run_not_the_installed_one(tmp_path, monkeypatch):
    """One environment serves several clones; each stage must read and write its own files."""
    from bertforge.config import conf_dir, resolve_path, root_dir

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf/config.yaml").write_text("seed: 1\n")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path / "sub")
    assert root_dir() == tmp_path.resolve() and conf_dir() == tmp_path.resolve() / "conf"
    assert resolve_path("metrics/x.json") == tmp_path.resolve() / "metrics/x.json"
    # a queued or --temp experiment: DVC runs the stage in its workspace but DVC_ROOT names the
    # user's checkout; files go to the workspace, the MLflow store to the checkout
    from bertforge.tracking import tracking_uri

    monkeypatch.setenv("DVC_ROOT", str(REPO))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert root_dir() == tmp_path.resolve()
    assert tracking_uri() == f"sqlite:///{REPO / 'mlflow.db'}"
    # inputs beside the checkout (../shared/data) are beside the user's checkout, not the workspace
    assert resolve_path("../shared/data/RTE") == REPO / "../shared/data/RTE"
    assert resolve_path("outputs/prepare") == tmp_path.resolve() / "outputs/prepare"
    monkeypatch.chdir("/")
    assert root_dir() == REPO


@pytest.mark.parametrize("group", ["corpus", "tokenizer", "trainer"])
def test_every_profile_composes_as_dvc_exp_run_would(tmp_path, group):
    """`dvc exp run -S corpus=<profile>` composes params.yaml with DVC's own compose-and-dump."""
    for path in sorted((REPO / "conf" / group).glob("*.yaml")):
        out = tmp_path / f"{group}-{path.stem}.yaml"
        write_params(out, [f"{group}={path.stem}"])
        cfg = OmegaConf.load(out)
        if group == "corpus":
            assert cfg.corpus.name == path.stem and cfg.corpus.format in ("demo", "text", "jsonl", "hf", "mix")
            for source in (cfg.corpus.get("sources") or {}).values():  # a mix carries its sources in full
                assert source.format in ("text", "jsonl") and source.files
        elif group == "trainer":
            assert {"accelerator", "devices", "num_nodes", "strategy", "precision", "compile"} <= set(cfg.trainer)


PKG = REPO / "src" / "bertforge"


def _module_file(name: str) -> Path | None:
    """src/bertforge/a/b.py for the module `bertforge.a.b`; None for anything else."""
    f = PKG.joinpath(*name.split(".")).with_suffix(".py") if name else None
    return f if f is not None and f.exists() else None


def _bertforge_imports(path: Path) -> set[str]:
    """Modules of src/bertforge a file imports (dotted, below `bertforge`), function-local imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bertforge"):
            base = node.module.removeprefix("bertforge").lstrip(".")
            found |= {base} | {f"{base}.{a.name}".lstrip(".") for a in node.names}  # `from pkg import module`
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("bertforge.") for a in node.names if a.name.startswith("bertforge.")}
    return {m for m in found if _module_file(m)}


def test_package_inits_hold_no_code():
    """dvc.yaml lists modules, not the packages' __init__.py: that is only right while they hold nothing to run."""
    for init in PKG.rglob("__init__.py"):
        body = ast.parse(init.read_text(encoding="utf-8")).body
        assert len(body) <= 1 and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), init


@pytest.mark.parametrize("stage", ["prepare", "pretrain", "finetune", "evaluate", "summarize"])
def test_dvc_deps_list_every_module_the_stage_imports(stage):
    """A module missing from `deps` would leave stale cached outputs after it is edited."""
    import yaml

    seen, todo = set(), list(_bertforge_imports(REPO / "pipelines" / f"{stage}.py"))
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += _bertforge_imports(_module_file(module))
    assert f"stages.{stage}" in seen
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    deps = (spec.get("do") or spec)["deps"]
    listed = {
        d.removeprefix("src/bertforge/").removesuffix(".py").replace("/", ".") for d in deps if d.startswith("src/")
    }
    assert listed == seen, f"dvc.yaml {stage}: missing {sorted(seen - listed)}, not imported {sorted(listed - seen)}"


@pytest.mark.parametrize(
    "group", ["model", "tokenizer", "pretrain", "finetune", "trainer", "tracking", "budget", "corpus", "task", "tasks"]
)
def test_every_option_of_every_group_fits_the_schema(group):
    """The schema (src/bertforge/schema.py) and conf/ cannot drift: each option composes and
    passes, so each YAML file defines exactly the schema's keys with values of its types (a
    corpus profile those of its reader, a task those of its source)."""
    from bertforge.schema import check_config

    for option in sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml")):
        check_config(compose([f"+budget={option}" if group == "budget" else f"{group}={option}"]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["model.hidden_size=1.5"],
            r"model.hidden_size: Value '1.5' of type 'float' could not be converted to Integer",
        ),
        (["trainer.num_workers=two"], r"trainer.num_workers: Value 'two'"),
        (["+pretrain.warmup_stpes=10"], r"pretrain.warmup_stpes: not a setting of pretrain \(known: objective, "),
        (["~finetune.epochs"], r"finetune.epochs: missing \(conf/finetune/ defines every finetune key\)"),
        (["seed=1.5"], r"seed: an integer is required \(got 1.5\)"),
        (["tracking.log_model=maybe"], r"tracking.log_model: Value 'maybe' is not a valid bool"),
        (["workers=all"], r"workers: an integer is required \(got 'all'\)"),
        (["corpus=text", "+corpus.layuot=wrapped"], r"corpus.layuot: not a setting of corpus \(known: name, format, "),
        (["corpus=jsonl", "~corpus.text_column"], r"corpus.text_column: missing \(a jsonl corpus sets it; "),
        (["corpus=hf", "+corpus.delimiter=semicolon"], r"corpus.delimiter: not a setting of corpus"),
        (["corpus.format=pdf"], r"corpus.format: unknown reader 'pdf' \(known: text, jsonl, csv, hf, mix, demo\)"),
        (
            ["corpus=korean", "corpus.sources.petitions.max_line_chars=big"],
            r"corpus.sources.petitions.max_line_chars: Value 'big' of type 'str' could not be converted to Integer",
        ),
        (["task=rte", "+task.score_metric=[accuracy]"], r"task.score_metric: not a setting of task \(known: name, "),
        (["task=rte", "task.local.header=maybe"], r"task.local.header: Value 'maybe' is not a valid bool"),
        (["task=rte", "+task.predict.test.idnex=id"], r"task.predict.test.idnex: not a setting of task.predict.test"),
        (["task=rte", "task.predict.test=foo"], r"task.predict.test: a mapping of submission, file, .* \(got 'foo'\)"),
        (["task=rte", "task.local=foo"], r"task.local: a mapping of data_dir, format, .* \(got 'foo'\)"),
        (["task=rte", "task.source=web"], r"task.source: unknown source 'web' \(known: demo, local, hf\)"),
        (["task=rte", "task.source=hf", "task.hf=null"], r"task.hf: missing \(a task with source hf reads it\)"),
        (
            ["task=demo", "task.finetune.lr=fast"],
            r"task.finetune.lr: Value 'fast' of type 'str' could not be converted",
        ),
        (["task=demo", "+task.finetune.lrr=0.1"], r"task.finetune.lrr: not a setting of task.finetune"),
        (["tasks=glue", "+tasks.cola.binary_threshold=high"], r"tasks.cola.binary_threshold: Value 'high'"),
        (["pretrain.adam_betas=[0.9,0.99,0.5]"], r"pretrain.adam_betas=\[0.9, 0.99, 0.5\]: must be two numbers in"),
        (["finetune.warmup_ratio=1"], r"finetune.warmup_ratio=1: must be in \[0, 1\)"),
        (["pretrain.dropout=1"], r"pretrain.dropout=1: must be in \[0, 1\)"),
        (["finetune.objective=siamese"], r"finetune.objective=siamese: must be cross_encoder or bi_encoder"),
        (
            ["+finetune.per_task.stsb.pooling=pooled"],
            r"finetune.per_task.stsb.pooling=pooled: must be mean, cls or max",
        ),
        (["tasks=glue", "+tasks.rte.finetune.epochs=0"], r"tasks.rte.finetune.epochs=0: must be >= 1"),
        (["+finetune.per_task.sst2.epochs=0"], r"finetune.per_task.sst2.epochs=0: must be >= 1"),
        (["+finetune.per_task.sst2.lrr=1"], r"finetune.per_task.sst2.lrr: not a setting of finetune.per_task.sst2"),
        (["+finetune.per_task.sst2=3"], r"finetune.per_task.sst2: a mapping is required \(got 3\)"),
        (["+finetune.per_task.sst2.init=random"], r"finetune.per_task.sst2.init: set for the whole run"),
        (["task=rte", "+task.finetune.init=random"], r"task.finetune.init: set for the whole run"),
    ],
)
def test_the_schema_names_the_bad_key(overrides, message):
    from bertforge.schema import check_config

    with pytest.raises(ConfigError, match=message):
        check_config(compose(overrides))


def test_ranges_are_checked_on_the_typed_value_and_leave_interpolations_to_the_reader():
    from bertforge.schema import check_config

    cfg = compose(["pretrain.lr=1e-3", "finetune.lr=${pretrain.lr}"])  # 1e-3 and an interpolation pass
    cfg.pretrain.lr = "0.0"  # a string edited in after composing is converted before its range is checked
    with pytest.raises(ConfigError, match=r"^pretrain.lr=0.0: must be > 0$"):
        check_config(cfg)


def test_params_file_overrides_are_checked_like_hydra_ones(tmp_path):
    """The DVC path (`--params params.yaml key=value`) goes through the same schema."""
    from bertforge.schema import check_config

    check_config(load_params(REPO / "params.yaml", [], "demo"))
    with pytest.raises(ConfigError, match=r"pretrain.batch_size: Value 'big'"):
        check_config(load_params(REPO / "params.yaml", ["pretrain.batch_size=big"], "demo"))


def test_a_task_file_names_only_what_it_uses_and_the_schema_fills_the_rest():
    """Optional task keys take their defaults from the schema, in every task of the suite too."""
    cfg = compose(["task=rte", "tasks=glue"])
    for task in (cfg.task, cfg.tasks.rte):
        assert task.eval_splits == ["dev"] and task.language == "en" and task.score_metrics is None
        assert task.binary_threshold == 3.0 and task.finetune == {} and task.split is None
        assert task.local.skip_malformed is False and task.hf.streaming is False
        assert task.predict.test.hf_index == "idx" and task.predict.test.header is None
    assert cfg.tasks.cola.score_metrics == ["matthews_corr"]  # what a file sets is kept
    assert compose(["task=kornli"]).task.local.skip_malformed is True
    demo = compose(["task=demo"]).task
    assert demo.problem == "classification" and demo.labels is None and demo.finetune.epochs == 6


@pytest.mark.parametrize("corpus", ["korean", "wikipedia_ko", "korean_petitions"])
def test_korean_corpus_profiles_pick_the_hangul_safe_tokenizer_unless_one_is_named(corpus, tmp_path):
    import yaml
    from dvc.utils.hydra import compose_and_dump

    korean = compose(["tokenizer=korean"]).tokenizer
    assert not korean.lowercase and not korean.strip_accents
    assert compose([f"corpus={corpus}"]).tokenizer == korean
    assert compose([f"corpus={corpus}", "tokenizer=korean_morpheme"]).tokenizer.pre_segmentation == "mecab-ko"
    assert compose(["corpus=wikipedia_en"]).tokenizer == compose([]).tokenizer  # English keeps the default
    # `dvc exp run -S corpus=...` composes through DVC's own Hydra into params.yaml
    out = tmp_path / "params.yaml"
    compose_and_dump(out, str(REPO / "conf"), None, "config", str(REPO / ".dvc" / "plugins"), [f"corpus={corpus}"])
    assert yaml.safe_load(out.read_text())["tokenizer"] == OmegaConf.to_container(korean)
