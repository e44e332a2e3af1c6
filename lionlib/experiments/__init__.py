"""The network experiments: CIFAR-10 (`cifar`), the GPT and its data (`gpt`, `gpt_data`), and what
they share (`common`). Each runs from its own command line (`python -m lionlib.experiments.cifar`);
the notebooks call the same functions."""
