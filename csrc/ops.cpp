// Operator schemas of the dynst_fast extension (torch.ops.dynst_fast.*).
//
// Schemas live here, once; kernels register against them per backend with
// TORCH_LIBRARY_IMPL (csrc/cpu/*.cpp for CPU, csrc/cuda/graph_ops_cuda.cpp over the raw
// kernels of csrc/cuda/*.cu for CUDA). Fake
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
// A module named _C with one constant, WITH_CUDA (1 when csrc/cuda was compiled in):
// `from dynst_fast import _C` loads this shared library, which runs the static
// TORCH_LIBRARY registrations of every file in it. (PyMODINIT_FUNC is extern "C" and
// exported.)
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",     // name
      nullptr,  // doc
      -1,       // per-interpreter state size (none)
      nullptr,  // methods
  };
  PyObject* module = PyModule_Create(&module_def);
#ifdef WITH_CUDA
  const long with_cuda = 1;
#else
  const long with_cuda = 0;
#endif
  if (module != nullptr && PyModule_AddIntConstant(module, "WITH_CUDA", with_cuda) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
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
  // Gated message passing out[b, i] = sum_j A[i, j] * gate[j] * x[b, j] for a CSR
  // graph A of shape (num_rows, S) (row = target), x [B, S, F], gate [S] of x's dtype
  // (float32 / float64); weight may be any floating dtype. Returns [B, num_rows, F].
  m.def(
      "gated_spmm(Tensor rowptr, Tensor col, Tensor weight, Tensor x, Tensor gate,"
      " int num_rows) -> Tensor");
  // The same forward, also given the transposed CSR (t_rowptr [S + 1], t_col [E],
  // t_weight [E], as CSRGraph.transpose() builds it), which only its backward reads:
  // the differentiable entry point that dynst_fast.ops.gated_spmm uses, so that the
  // backward reuses a cached transpose instead of building one per call.
  m.def(
      "gated_spmm_tr(Tensor rowptr, Tensor col, Tensor weight, Tensor t_rowptr, Tensor t_col,"
      " Tensor t_weight, Tensor x, Tensor gate, int num_rows) -> Tensor");
  // Backward of gated_spmm from the transposed CSR of A: with y = A^T grad_out,
  // returns grad_x = gate[:, None] * y ([B, S, F]) and grad_gate[j] = sum_{b,f}
  // x[b, j, f] * y[b, j, f] ([S]; all zeros when need_gate_grad is false).
  m.def(
      "gated_spmm_backward(Tensor t_rowptr, Tensor t_col, Tensor t_weight, Tensor x,"
      " Tensor gate, Tensor grad_out, bool need_gate_grad) -> (Tensor, Tensor)");
  // Transposed CSR (rowptr [num_cols + 1], col [E], weight [E]) of a CSR graph with
  // num_cols columns; inside a row of the result, edges keep their input order.
  m.def(
      "csr_transpose(Tensor rowptr, Tensor col, Tensor weight, int num_cols)"
      " -> (Tensor, Tensor, Tensor)");
  // out[b, k, :] = x[b, index[k], :] * theta[index[k]] (no scaling when theta is None):
  // the active sensors [B, K, F] of x [B, N, F]. index: K distinct int64 in [0, N).
  m.def("compact(Tensor x, Tensor? theta, Tensor index) -> Tensor");
  // Backward of compact with theta: (dx [B, N, F], dtheta [N], or [0] when need_theta_grad
  // is false), dx[b, j] = grad[b, k] * theta[j] and dtheta[j] = sum_{b, f} x[b, j, f] *
  // grad[b, k, f] for j = index[k]; dx is 0 on the other rows.
  m.def(
      "compact_backward(Tensor grad, Tensor x, Tensor theta, Tensor index,"
      " bool need_theta_grad) -> (Tensor, Tensor)");
  // [B, n, F]: row index[k] = y[:, k], every other row = fill (the inverse of compact).
  m.def("expand(Tensor y, Tensor index, int n, float fill) -> Tensor");
  // Active p x p patches of frames [B, T, C, H, W] (zero-padded at the bottom/right,
  // patches row-major, features (t, c, dy, dx)) times theta[index]: [B, K, T*C*p*p].
  m.def("patchify_compact(Tensor frames, Tensor theta, Tensor index, int p) -> Tensor");
  // Its backward: (dframes [B, T, C, H, W], dtheta [N] or [0] when need_theta_grad is false).
  m.def(
      "patchify_compact_backward(Tensor grad, Tensor frames, Tensor theta, Tensor index,"
      " int p, bool need_theta_grad) -> (Tensor, Tensor)");
  // (drop [k], grow [k]) int64: the k active entries of lowest score and the k inactive
  // ones of highest score, each ordered from the most extreme, ties to the lower index,
  // -0.0 equal to +0.0. score [N] floating point without NaN, active [N] bool; movable
  // [N] bool (optional): only these may be dropped or grown (keep / forbid constraints).
  m.def(
      "select_swap(Tensor score, Tensor active, int k, Tensor? movable=None)"
      " -> (Tensor, Tensor)");
  // A new [N] bool mask: active without its k entries of lowest |score| (same ties);
  // with movable, only movable entries are pruned.
  m.def("prune_lowest(Tensor score, Tensor active, int k, Tensor? movable=None) -> Tensor");
  // (index [N, m] int64, valid [N, m] bool): for every row of candidates [N, L] (sensor
  // numbers in [0, S), nearest first, -1 padding), its first m entries whose active [S]
  // flag is set, in list order; the slots a row cannot fill are index 0, valid false.
  m.def("nearest_active(Tensor candidates, Tensor active, int m) -> (Tensor, Tensor)");
  // Attention of every target over its neighbours, [B, N, E]: for target i of batch b and
  // valid neighbours j = index[i, j'] (index [N, m] int64, valid [N, m] bool),
  // s = scale <q[b, i], k[b, j]> + bias[b or 0, i, j'], weights gate[j] exp(s) normalised
  // over the valid neighbours, out[b, i] = sum of weights x v[b, j]; 0 where the weights
  // sum to 0. q [B, N, D], k [B, S, D], v [B, S, E], bias [B or 1, N, m], gate [S], one
  // floating dtype.
  m.def(
      "neighbour_attention(Tensor q, Tensor k, Tensor v, Tensor index, Tensor valid,"
      " Tensor bias, Tensor gate, float scale) -> Tensor");
  // Its backward: (dq, dk, dv, dbias, dgate), each shaped like its input.
  m.def(
      "neighbour_attention_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v,"
      " Tensor index, Tensor valid, Tensor bias, Tensor gate, float scale)"
      " -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}
