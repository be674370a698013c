"""The deployable student: srkd models as plain tensor programs, and `srkd export`.

    network.py  TensorNetwork: a PTv3 / SpUNet's own modules on host-built indices (no spconv
                calls, no data-dependent shapes); plan_for(model) -> IndexPlan
    ops.py      sparse convs and patch attention as gather / matmul / softmax
    export.py   write a checkpoint's network as ONNX or a torch.export program + its spec
Index building is numpy only and lives in `srkd.runtime.indices`, which the runtime shares.
"""
