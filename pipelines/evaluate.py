"""DVC stage `evaluate`: dev metrics, predictions and confusion matrix of one task. Its code is bertforge.stages.evaluate (src/bertforge/stages/evaluate.py)."""

from bertforge.stages.evaluate import main

if __name__ == "__main__":
    main()
