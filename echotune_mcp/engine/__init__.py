"""The local inference engine, split as serving engines are: ``scheduler`` decides who runs each step,
runners execute a batch (``musicgen_runner`` at the decode step, ``demucs_runner`` per segment), ``engine``
gives callers async handles, ``model_manager`` owns weights on disk and models in memory, and ``daemon`` /
``remote`` share one engine between server processes."""
