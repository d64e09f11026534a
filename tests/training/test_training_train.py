import json

import numpy as np
import pytest
import torch

from tests.support.training_config import write_config
from training.config import TrainConfig, load_config
from training.curriculum import Curriculum, read_documents, tokenize_documents
from training.train import lr_multiplier, train


@pytest.mark.slow  # trains a model
def test_resume_is_bitwise_exact(tmp_path, data_dir):
    straight = load_config(write_config(tmp_path / "a.yaml", data_dir, tmp_path / "a"))
    resumed = load_config(write_config(tmp_path / "b.yaml", data_dir, tmp_path / "b"))
    train(straight)
    first_half = train(resumed, until_step=5)  # stops mid-phase, between two evaluations
    assert first_half["step"] == 5
    train(resumed)
    a = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=False)
    assert a["step"] == b["step"] == 8 and a["tokens"] == b["tokens"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name

    def losses(run):
        records = [
            json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        ]
        return [(r["step"], r.get("loss"), r.get("val_loss")) for r in records]

    assert losses("a") == losses("b") and len(losses("a")) == 8 + 3  # 8 steps, 3 evaluations
    assert (tmp_path / "b" / "learning_curve.png").stat().st_size > 1000


@pytest.mark.slow  # trains a model
def test_a_checkpoint_before_the_first_log_line(tmp_path, data_dir):
    cfg = load_config(
        write_config(tmp_path / "a.yaml", data_dir, tmp_path / "a"),
        ["train.log_every=100", "train.checkpoint_every_steps=1"],
    )
    assert train(cfg, until_step=1)["step"] == 1
    run = tmp_path / "a"
    assert (run / "ckpt.pt").exists() and (run / "learning_curve.png").exists()


@pytest.mark.slow  # trains a model
def test_checkpoint_from_before_a_model_field_existed_resumes(tmp_path, data_dir):
    """Model fields added later (model.family, ...) hold their defaults in older checkpoints."""
    cfg = load_config(write_config(tmp_path / "a.yaml", data_dir, tmp_path / "a"))
    train(cfg, until_step=5)
    path = tmp_path / "a" / "ckpt.pt"
    ckpt = torch.load(path, weights_only=False)
    for name in ("family", "n_kv_head", "intermediate_size", "rope_theta"):
        del ckpt["config"]["model"][name]
    torch.save(ckpt, path)
    assert train(cfg)["step"] == 8
    other = load_config(tmp_path / "a.yaml", ["model.family=llama", "model.dropout=0.0"])
    with pytest.raises(ValueError, match="another model config"):
        train(other)


@pytest.mark.slow  # trains a model
def test_batches_built_by_worker_processes_are_the_same(tmp_path, data_dir):
    inline = load_config(write_config(tmp_path / "a.yaml", data_dir, tmp_path / "a"))
    workers = load_config(
        write_config(tmp_path / "b.yaml", data_dir, tmp_path / "b"), ["train.num_workers=2"]
    )
    assert train(inline)["loss"] == train(workers)["loss"]
    a = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=False)["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.slow  # trains a model
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_training_lowers_the_loss(tmp_path, data_dir, family):
    cfg = load_config(
        write_config(tmp_path / "c.yaml", data_dir, tmp_path / "c"),
        ["train.eval_every=30", "model.dropout=0.0", f"model.family={family}"],
    )
    cfg.curriculum = {"causal": cfg.curriculum["random_fim"]}
    cfg.curriculum["causal"].steps = 30
    train(cfg)
    records = [json.loads(x) for x in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    assert [r for r in records if "val_loss" in r][-1]["val_loss"] < np.log(512)


def test_warmup_then_cosine_to_min_lr():
    t = TrainConfig(learning_rate=1.0, min_lr=0.1, warmup_steps=10)
    f = lr_multiplier(t, max_steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 110))


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_finetune_sources_in_published_formats(tmp_path, data_dir):
    from tokenizers import Tokenizer

    from training.config import PhaseConfig, SourceSpec
    from training.fim import FimConfig

    write_jsonl(
        tmp_path / "mbpp.jsonl",
        [
            {
                "task_id": 2,
                "text": "Write a function to find the shared elements of two lists.",
                "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
                "test_list": ["assert similar_elements((3, 4), (4, 5)) == (4,)"],
                "test_setup_code": "",
                "challenge_test_list": [],
            }
        ],
    )
    write_jsonl(
        tmp_path / "csn.jsonl",
        [
            {
                "repo": "a/b",
                "path": "b/m.py",
                "func_name": "add",
                "language": "python",
                "docstring": "Add two numbers.",
                "code": "def add(x, y):\n    return x + y",
                "partition": "train",
            }
        ],
    )
    mbpp = read_documents(SourceSpec("mbpp", str(tmp_path / "mbpp.jsonl")))
    csn = read_documents(SourceSpec("codesearchnet", str(tmp_path / "csn.jsonl")))
    assert mbpp == [
        '"""Write a function to find the shared elements of two lists.\n\n'
        'assert similar_elements((3, 4), (4, 5)) == (4,)\n"""\n'
        "def similar_elements(a, b):\n    return tuple(set(a) & set(b))\n"
    ]
    assert csn == ['def add(x, y):\n    """Add two numbers."""\n    return x + y\n']
    compile(mbpp[0], "mbpp", "exec") and compile(csn[0], "csn", "exec")

    tokenizer = Tokenizer.from_file(str(data_dir / "tokenizer.json"))
    phases = {"mixed": PhaseConfig(4, FimConfig(rate=0.0), {"pretrain": 1.0, "mbpp": 1.0})}
    sources = {
        "pretrain": np.fromfile(data_dir / "train.bin", dtype=np.uint16),
        "mbpp": tokenize_documents(mbpp * 20, tokenizer),
    }
    curriculum = Curriculum(phases, sources, tokenizer, block_size=16, seed=0)
    mbpp_bytes = sources["mbpp"].tobytes()
    from_mbpp = sum(curriculum.sample(0, i).tobytes() in mbpp_bytes for i in range(200))
    assert 60 < from_mbpp < 140
    assert np.array_equal(curriculum.sample(3, 5), curriculum.sample(3, 5))
    with pytest.raises(ValueError, match="unknown sources"):
        Curriculum({"x": phases["mixed"]}, {"pretrain": sources["pretrain"]}, tokenizer, 16, 0)
