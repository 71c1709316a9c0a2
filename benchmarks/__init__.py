"""The benchmark harness: ``python -m benchmarks`` measures FlagVision against a training loop
written as in the reference study and writes BENCHMARKS.md. It uses the library like any client
does and is not part of it."""
