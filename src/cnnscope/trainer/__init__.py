"""The maths of training: configuration, optimizers (Keras' and torch's update rules), schedules, steps and epochs.
Nothing here draws or walks run directories."""
