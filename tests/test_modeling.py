import pytest
import torch
from omegaconf import OmegaConf

from bertforge.config import ConfigError, compose
from bertforge.modeling import bert_config, build_pretraining_model, sparse_pretraining_forward


def test_sparse_mlm_matches_dense_bert_for_pretraining(tmp_path):
    from transformers import BertForPreTraining

    torch.manual_seed(0)
    model = build_pretraining_model(bert_config(compose().model, 300, 0)).eval()
    ids = torch.randint(5, 300, (3, 20))
    labels = torch.full_like(ids, -100)
    labels[:, [2, 7, 11]] = ids[:, [2, 7, 11]]
    batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids), labels=labels)
    with torch.no_grad():
        ours = sparse_pretraining_forward(model, batch)
        model.save_pretrained(tmp_path)
        ref = BertForPreTraining.from_pretrained(tmp_path).eval()
        dense = ref(input_ids=ids, attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"])
    assert ours.mlm_logits.shape == (9, 300)
    # tolerance: fp32 reassociation between gathered and full-sequence matmuls
    torch.testing.assert_close(ours.mlm_logits, dense.prediction_logits[labels != -100], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.nsp_logits, dense.seq_relationship_logits, atol=1e-5, rtol=1e-5)
    assert ref.cls.predictions.decoder.weight.data_ptr() == ref.bert.embeddings.word_embeddings.weight.data_ptr()


def test_impossible_config_fails_before_training():
    bad = OmegaConf.merge(compose().model, {"hidden_size": 130, "num_attention_heads": 4})
    with pytest.raises(ConfigError, match="model.hidden_size=130 is not divisible by model.num_attention_heads=4"):
        bert_config(bad, 100, 0)
