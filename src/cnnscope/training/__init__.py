"""Training a run: the public train()/resume(), the epoch loop over a run directory and the callbacks that draw or
record (curves, probe, TensorBoard). An entry point above views/."""
