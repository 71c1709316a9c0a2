"""One way to train: the engine (``engine.fit`` / ``engine.evaluate``, with ``callbacks``), a run end to end
in its folder (``pipeline.run_training``), checkpoints as data (``checkpoints``: safetensors + JSON card), and
``run.execute_run``, the only place that creates, finishes and fails a run; the CLI, the worker and every
study trial call it.
"""
