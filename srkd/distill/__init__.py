"""Stage two, `srkd distill` (and `srkd train-teacher`, the same loop without a teacher).

    config.py       RunConfig, OptimConfig: the settings of one training job (what a checkpoint
                    records); DistillConfig, TeacherConfig: the two commands' options
    run.py          run(cfg): RunConfig -> the pieces below -> the loop (the glue, top to bottom)
    teacher.py      where targets come from: the cache (opened, checked) or an online teacher
    targets.py      teacher targets: cached (gathered per sample by the dataset, CachedTargets.sample;
                    batch_targets takes them from the batch) or an online teacher
    data.py         the training chain, dataset, loader and the batches of an epoch
    loss.py         the loss recipe -> DistillLoss -> the loop's loss function
    model.py        the model, train_params, the checkpoint writer, the resume identity
    ddp.py          torchrun: process group, rank device, sampler, DDP wrappers
    loop.py         the training loop (AdamW + one-cycle segments, AMP, resume / extension)
    state.py        the run folder and train_state.pt (save, check, load)
    run_log.py      log.jsonl rows, sinks; curves.py draws curves.png
    tensorboard.py  the optional TensorBoard sink
"""
