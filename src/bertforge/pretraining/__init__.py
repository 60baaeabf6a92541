"""Pre-training: the BERT model, its Lightning module and data module, optimizers, time budgets, the training loop."""
