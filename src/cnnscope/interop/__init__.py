"""Other tools' files: Keras models in (interop/keras) and ONNX out (interop/onnx)."""
