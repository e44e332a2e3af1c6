"""The network experiments, one engine for all of them.

- `specs`: one frozen, hashable run spec per task (CIFAR, GPT, Distributed Lion) and, per task, the
  one place that maps a scale to sizes;
- `engine`: what every trainer shares (runtime: device, bf16 autocast, `torch.compile`, DDP; the one
  optimizer factory; schedules; classifier evaluation; progress bars);
- the trainers, one per task, each `spec -> RunRecord` on CPU and CUDA: `cifar_train` (nets in `nets`,
  data in `cifar_data`), `gpt_train` (model in `gpt_model`, data in `gpt_data`), `distributed_train`;
- `record` (the one result type, schema `lionlib.run/1`) and `store` (the run store under
  `paper_figures/runs/`: a missing record is trained, a stored one read back);
- `checkpoint` (run folders, resume, Ctrl-C), `cli`, `cifar` and `gpt` (the command lines:
  `python -m lionlib.experiments.cifar --help`), `common` (data folders, paths, downloads, errors).

The notebooks and the command lines call the same trainers."""
