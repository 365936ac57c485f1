"""Keras .h5/.keras files read without TensorFlow, converted to a cnnscope spec and weights."""
