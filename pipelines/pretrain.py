"""DVC stage `pretrain`: MLM + NSP pre-training -> HF-format BERT directory. Its code is bertforge.stages.pretrain (src/bertforge/stages/pretrain.py)."""

from bertforge.stages.pretrain import main

if __name__ == "__main__":
    main()
