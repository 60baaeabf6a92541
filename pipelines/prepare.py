"""DVC stage `prepare`: corpus -> tokenizer + token shards. Its code is bertforge.stages.prepare (src/bertforge/stages/prepare.py)."""

from bertforge.stages.prepare import main

if __name__ == "__main__":
    main()
