"""DVC stage `finetune`: fine-tune the pre-trained BERT on one task -> HF-format classifiers. Its code is bertforge.stages.finetune (src/bertforge/stages/finetune.py)."""

from bertforge.stages.finetune import main

if __name__ == "__main__":
    main()
