"""Fine-tuning and evaluation: tasks and their metrics, the classifier module, the training loop, predictions."""
