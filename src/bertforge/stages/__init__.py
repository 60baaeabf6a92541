"""One module per DVC stage, each holding that stage's whole orchestration as `run(cfg)` and `main()`;
`pipelines/<stage>.py` only calls `main()`."""
