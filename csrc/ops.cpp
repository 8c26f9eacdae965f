// Operator schemas of the dynst_fast extension (torch.ops.dynst_fast.*).
//
// Schemas live here, once; kernels register against them per backend with
// TORCH_LIBRARY_IMPL (csrc/cpu/*.cpp for CPU, csrc/cuda/*.cu for CUDA). Fake
// (meta) and autograd registrations are done from Python.
//
// Built by setup.py as the Python module dynst_fast._C (with DYNST_PYTHON_MODULE
// defined, which adds the empty module init below) and by CMakeLists.txt as the
// plain libtorch library dynst_fast_ops (no Python dependency).

#ifdef DYNST_PYTHON_MODULE
#include <Python.h>  // before any standard header, as Python asks
#endif

#include <torch/library.h>

#ifdef DYNST_PYTHON_MODULE
// An empty module named _C: `from dynst_fast import _C` loads this shared
// library, which runs the static TORCH_LIBRARY registrations of every file in it.
// (PyMODINIT_FUNC is extern "C" and exported.)
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",     // name
      nullptr,  // doc
      -1,       // per-interpreter state size (none)
      nullptr,  // methods
  };
  return PyModule_Create(&module_def);
}
#endif  // DYNST_PYTHON_MODULE

TORCH_LIBRARY(dynst_fast, m) {
  // CSR (rowptr [N + 1], col [E], weight [E]) of A[index][:, index] of a square
  // graph, relabelled to 0..K-1, edge order inside a row kept.
  m.def(
      "induce_subgraph(Tensor rowptr, Tensor col, Tensor weight, Tensor index)"
      " -> (Tensor, Tensor, Tensor)");
  // CSR of A[:, index] (num_rows x K) of a graph with num_cols columns, columns
  // relabelled to 0..K-1, edge order inside a row kept.
  m.def(
      "bipartite(Tensor rowptr, Tensor col, Tensor weight, Tensor index, int num_cols)"
      " -> (Tensor, Tensor, Tensor)");
}
