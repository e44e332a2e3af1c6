"""The network experiments: CIFAR-10 (`cifar`, its net `cifar_model`, its data `cifar_data`), the GPT
(`gpt`, `gpt_config`, `gpt_model`, `gpt_data`), and what they share: `common` (data folders, checksummed
downloads, atomic writes, optimizers by name, the errors a user can act on), `checkpoint` (run folders,
resume, Ctrl-C) and `cli` (the command lines). Each runs from its own command line
(`python -m lionlib.experiments.cifar --help`); the notebooks call the same functions."""
