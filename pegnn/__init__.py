"""pegnn: permutation-equivariant GNNs for wireless resource allocation, declared
from the problem's sets and tensors (PyTorch Geometric).

    spec = pegnn.load_spec("graphs/tenn_precoding.yaml")
    print(pegnn.plan(spec))                       # symmetry group, modules, processors
    g = pegnn.build_graph(spec, "ue=8,ant_ue=2,ant_bs=32", {"H": H, "noise": 0.1})
    model = pegnn.PEGNN(spec, **pegnn.TEPN)         # TEPN of paper 000, from the plan
    out = model(g)                                  # {"A": [8, 2, 2], "U": [8, 2, 2]} complex
"""
from .spec import ProblemSpec, SpecError, load_spec
from .sizes import parse_sizes
from .plan import Plan, plan
from .graph import SetGraph, build_batch, build_graph
from .models import PEGNN, TEPN, TEUSN, unbatch
from .policy_files import pretrained
from . import wireless      # pegnn.wireless.ris_channels(...) etc.; cheap (Sionna loads on first UMa use)

__all__ = ["ProblemSpec", "SpecError", "load_spec", "parse_sizes", "Plan", "plan",
           "SetGraph", "build_graph", "build_batch", "PEGNN", "TEPN", "TEUSN", "unbatch", "pretrained", "wireless"]
__version__ = "0.1.0"
