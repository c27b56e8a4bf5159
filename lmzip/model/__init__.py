"""The model layer: the exact model's definition and its torch reference, the integer tables,
the tokenizer, importing and converting weights, and the model registry and cache (the native
runtime that computes the same integers is ``lmzip.native``)."""
