"""The prediction layer above the model: the adaptive predictor that learns the file, and the
decoder's guesses of the next tokens."""
