"""What a model is: the layer vocabulary, geometry, the spec, presets, the summary, the torch module."""
