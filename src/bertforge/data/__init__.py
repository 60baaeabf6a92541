"""Text in, training examples out: corpus and task-file readers, tokenizers, shards, NSP pairs and masking."""
