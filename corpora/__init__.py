# Installed as the package ``lmzip._corpora`` (see pyproject.toml): the manifest of the
# benchmark corpora (names, sizes, sha256, kinds, origins) travels with lmzip; their text does not.
