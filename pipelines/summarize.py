"""DVC stage `summarize`: one table of per-task dev scores. Its code is bertforge.stages.summarize (src/bertforge/stages/summarize.py)."""

from bertforge.stages.summarize import main

if __name__ == "__main__":
    main()
