"""Stage two, `srkd distill` (and `srkd train-teacher`, the same loop without a teacher).

    run.py          RunConfig -> data, model, teacher targets, loss, DDP -> the loop
    targets.py      teacher targets: cached (view / canonical / ensemble) or an online teacher
    loop.py         the training loop (AdamW + one-cycle segments, AMP, resume / extension)
    state.py        the run folder and train_state.pt (save, check, load)
    run_log.py      log.jsonl rows, curves.png, sinks
    tensorboard.py  the optional TensorBoard sink
"""
