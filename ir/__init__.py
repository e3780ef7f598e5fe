"""dscompile's graph IR: types, nodes and graphs, the op registry, text and JSON forms,
and the verifier. Nothing here runs or times anything."""

from ir.analysis import to_networkx
from ir.graph import LEAF_OPS, Graph, Node
from ir.parser import IRParseError, parse
from ir.printer import print_graph
from ir.registry import OPS, IRTypeError, OpDef, get_op, infer_type, register_op
from ir.serialize import IRFileError, from_json, load, save, to_json
from ir.types import DTYPES, TensorType, itemsize
from ir.verify import IRVerifyError, verify

__all__ = [
    "DTYPES", "LEAF_OPS", "OPS", "Graph", "IRFileError", "IRParseError", "IRTypeError",
    "IRVerifyError", "Node", "OpDef", "TensorType", "from_json", "get_op", "infer_type",
    "itemsize", "load", "parse", "print_graph", "register_op", "save", "to_json",
    "to_networkx", "verify",
]
