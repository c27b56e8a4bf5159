# Installed as the package ``lmzip._models`` (see pyproject.toml): the registry, model
# cards and small shipped weights travel with lmzip.
